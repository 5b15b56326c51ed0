//! The JSON Schema (draft 2020-12) of the policy format, generated from the key table so that
//! the schema and the parser cannot disagree about which keys exist.

use serde_json::{Map, Value, json};

use crate::keys::{self, Key, Section, Ty};

/// The schema, for editors (taplo, Even Better TOML) and for `vitrine policy schema`.
pub fn schema() -> Value {
    let mut root = object(&keys::POLICY);
    let m = root.as_object_mut().expect("object() builds an object");
    m.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    m.insert("$id".into(), json!("https://example.invalid/vitrine/policy.schema.json"));
    m.insert("title".into(), json!("vitrine visualization policy"));
    m.insert("required".into(), json!(["visualization"]));
    constrain(&mut root);
    root
}

/// The rules between keys that editors can check too: type-specific param keys, and keys that
/// only make sense together.
fn constrain(root: &mut Value) {
    let only = |key: &str, types: &[&str]| json!({"if": {"required": [key]}, "then": {"properties": {"type": {"enum": types}}}});
    let param = &mut root["properties"]["osc"]["properties"]["params"]["items"];
    param["allOf"] = json!([
        only("range", &["float", "int"]),
        only("max_len", &["string", "blob"]),
        only("one_of", &["string"]),
    ]);
    param["dependentRequired"] = json!({"out_of_range": ["range"]});
    root["properties"]["verify"]["dependentRequired"] = json!({
        "minisign_signature": ["minisign_keys"],
        "minisign_keys": ["minisign_signature"],
    });
}

fn object(s: &Section) -> Value {
    let mut props = Map::new();
    for k in s.keys {
        props.insert(k.name.into(), property(k));
    }
    let required: Vec<&str> = s.keys.iter().filter(|k| is_required(k)).map(|k| k.name).collect();
    let mut o = json!({
        "type": "object",
        "description": s.doc,
        "properties": props,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// Keys documented as required (their description says so and they have no default).
fn is_required(k: &Key) -> bool {
    k.default.is_none() && k.doc.ends_with("Required.")
}

fn property(k: &Key) -> Value {
    let mut v = ty(k.ty);
    let o = v.as_object_mut().expect("ty() builds an object");
    o.insert("description".into(), json!(k.doc));
    if let Some(d) =
        k.default.and_then(|d| d.parse::<toml::Value>().ok().or_else(|| parse_value(d)))
    {
        o.insert("default".into(), serde_json::to_value(d).unwrap_or(Value::Null));
    }
    v
}

/// TOML text of a single value (such as `"500ms"` or `[]`) as a toml value.
fn parse_value(text: &str) -> Option<toml::Value> {
    let doc: toml::Table = format!("v = {text}").parse().ok()?;
    doc.get("v").cloned()
}

const DURATION: &str = "^[0-9]+(ms|s|m|min|h)$";
const SIZE: &str = "^[0-9]+(B|K|k|KiB|M|MiB|G|GiB|T|TiB|KB|kB|MB|GB|TB)$";

fn ty(t: Ty) -> Value {
    match t {
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Str => json!({"type": "string"}),
        Ty::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Cores => json!({"type": "number", "minimum": 0.01, "maximum": 1024}),
        Ty::Duration => json!({"type": "string", "pattern": DURATION}),
        Ty::Size => json!({"type": "string", "pattern": SIZE}),
        Ty::SizeOrUnlimited => {
            json!({"type": "string", "anyOf": [{"pattern": SIZE}, {"const": "unlimited"}]})
        }
        Ty::IntOrUnlimited { min, max } => {
            json!({"anyOf": [{"type": "integer", "minimum": min, "maximum": max}, {"const": "unlimited"}]})
        }
        Ty::Name => json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"}),
        Ty::Path => json!({"type": "string", "pattern": "^/"}),
        Ty::Paths => json!({"type": "array", "items": {"type": "string", "pattern": "^/"}}),
        Ty::Strings => json!({"type": "array", "items": {"type": "string"}}),
        Ty::StrMap => {
            json!({"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}})
        }
        Ty::Enum(values) => json!({"type": "string", "enum": values}),
        Ty::EnumList(values) => {
            json!({"type": "array", "items": {"type": "string", "enum": values}, "uniqueItems": true})
        }
        Ty::IntList { min, max } => {
            json!({"type": "array", "items": {"type": "integer", "minimum": min, "maximum": max}, "uniqueItems": true})
        }
        Ty::Cpuset => {
            json!({"type": "string", "pattern": "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"})
        }
        Ty::Sha256 => json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        Ty::User => {
            json!({"anyOf": [{"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$", "not": {"const": "root"}}, {"type": "integer", "minimum": 1, "maximum": 4_294_967_294u64}]})
        }
        Ty::OscAddress => json!({"type": "string", "pattern": "^(/[^/ #*,?\\[\\]{}]+)+$"}),
        Ty::Range => {
            json!({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2})
        }
        Ty::Tables(s) => json!({"type": "array", "items": object(s)}),
        Ty::Table(s) => object(s),
        Ty::Addr => json!({"type": "string"}),
        Ty::Addrs => json!({"type": "array", "items": {"type": "string"}}),
        Ty::AddrOrOff => json!({"type": "string"}),
        Ty::NetRules => json!({"type": "array", "items": {"type": "string"}}),
    }
}
