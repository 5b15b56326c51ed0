//! The schema, the parser and the reference documentation describe the same keys.

#![allow(clippy::unwrap_used)] // A failing unwrap is a failing test.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

/// `section.key` paths of every property in the schema (array items are entered).
fn schema_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let v = v.get("items").unwrap_or(v);
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        assert_eq!(v["additionalProperties"], Value::Bool(false), "{prefix}");
        for (k, sub) in props {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            assert!(sub.get("description").is_some(), "{path} has no description");
            out.insert(path.clone());
            schema_paths(sub, &path, out);
        }
    }
}

fn toml_paths(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    let tables: Vec<&toml::Table> = match v {
        toml::Value::Table(t) => vec![t],
        toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_table).collect(),
        _ => return,
    };
    for t in tables {
        for (k, sub) in t {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.insert(path.clone());
            // env is a free-form table of variables, not keys of the format.
            if path != "visualization.env" {
                toml_paths(sub, &path, out);
            }
        }
    }
}

fn kitchen_sink() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kitchen-sink.toml"
    ))
    .unwrap()
}

#[test]
fn the_kitchen_sink_uses_every_schema_key_and_parses() {
    let mut from_schema = BTreeSet::new();
    schema_paths(&vitrine_policy::schema(), "", &mut from_schema);
    let text = kitchen_sink();
    let mut from_file = BTreeSet::new();
    toml_paths(&toml::Value::Table(text.parse::<toml::Table>().unwrap()), "", &mut from_file);
    assert_eq!(from_schema, from_file);
    let mut ctx = common::ctx();
    ctx.allow_unsigned = true;
    let path = common::repo().join("policies/examples/sink.toml");
    let p = vitrine_policy::parse_policy_bytes(text.as_bytes(), &path, &ctx)
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(!p.visualization.enabled);
    assert_eq!(p.limits.memory, None);
}

/// Any key outside the schema is refused, in every table.
#[test]
fn keys_outside_the_schema_are_refused() {
    let mut paths = BTreeSet::new();
    schema_paths(&vitrine_policy::schema(), "", &mut paths);
    let mut cases: Vec<String> = paths
        .iter()
        .filter_map(|p| p.split_once('.').map(|(s, _)| s))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|section| match section {
            "visualization" => {
                common::BASE.replacen("[visualization]\n", "[visualization]\nbogus_key = 1\n", 1)
            }
            // BASE ends inside [verify].
            "verify" => format!("{}bogus_key = 1\n", common::BASE),
            s => format!("{}[{s}]\nbogus_key = 1\n", common::BASE),
        })
        .collect();
    cases.push(format!("bogus_key = 1\n{}", common::BASE));
    cases.push(format!(
        "{}[[osc.params]]\naddress = \"/x\"\ntype = \"bool\"\nbogus_key = 1\n",
        common::BASE
    ));
    assert_eq!(cases.len(), 13);
    for text in cases {
        let errors = common::errors(&text);
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert!(errors[0].contains("key \"bogus_key\""), "{text}: {errors:?}");
    }
}

#[test]
fn schema_is_draft_2020_12_with_enums_and_defaults() {
    let s = vitrine_policy::schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["required"], serde_json::json!(["visualization"]));
    let restart = &s["properties"]["restart"]["properties"]["policy"];
    assert_eq!(restart["enum"], serde_json::json!(["always", "on-failure", "never"]));
    assert_eq!(restart["default"], "on-failure");
    assert_eq!(
        s["properties"]["visualization"]["required"],
        serde_json::json!(["name", "command"])
    );
    let param = &s["properties"]["osc"]["properties"]["params"]["items"];
    assert_eq!(param["required"], serde_json::json!(["address", "type"]));
    assert_eq!(s["properties"]["ipc"]["properties"]["port"]["default"], 9000);
    assert_eq!(param["dependentRequired"]["out_of_range"], serde_json::json!(["range"]));
    assert_eq!(
        param["allOf"][0]["then"]["properties"]["type"]["enum"],
        serde_json::json!(["float", "int"])
    );
}

/// docs/policy.md documents every key in its section's table.
#[test]
fn the_reference_documents_every_key() {
    let doc = std::fs::read_to_string(common::repo().join("docs/policy.md")).unwrap();
    let mut paths = BTreeSet::new();
    schema_paths(&vitrine_policy::schema(), "", &mut paths);
    let mut missing = Vec::new();
    for path in &paths {
        let Some((section, key)) = path.rsplit_once('.') else { continue };
        let heading = format!("### `[{}]`", section.replace("osc.params", "[osc.params]"));
        let heading = heading.replace("`[[[osc.params]]]`", "`[[osc.params]]`");
        let Some(start) = doc.find(&heading) else {
            missing.push(format!("heading {heading}"));
            continue;
        };
        let body = &doc[start + heading.len()..];
        let body = &body[..body.find("\n### ").unwrap_or(body.len())];
        if !body.contains(&format!("| `{key}` |")) {
            missing.push(path.clone());
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}
