//! The `[osc]` table with its `[[osc.params]]`, and the `[midi]` table.

use std::ops::Range;

use toml::de::DeValue;

use crate::diag::Report;
use crate::keys::{self, OSC_PARAM};
use crate::model::{
    MIDI_ADDRESS, MIDI_SYSEX_ADDRESS, MIDI_SYSEX_CAP, Midi, MidiMessageKind, Name, Osc, OscParam,
    OutOfRange, ParamKind,
};
use crate::values;
use crate::walk::{
    Field, Fields, Val, array, boolean, checked, integer, no_duplicates, number, one_of, string,
    type_error,
};

/// A blob param without `max_len` accepts this many bytes: enough for small images or presets,
/// far below the default 8 KiB packet limit.
const DEFAULT_BLOB_LEN: usize = 1024;

pub(crate) fn osc(r: &mut Report<'_>, mut f: Fields<'_, '_>, name: Option<&Name>) -> Option<Osc> {
    let prefix = f.get(r, "prefix", |r, v| checked(r, v, values::osc_address)).optional();
    let max_rate = f.get(r, "max_rate", |r, v| integer(r, v, 1, 100_000));
    let rate_limit = match &max_rate {
        Field::Value(n, _) => Some(*n),
        Field::Absent => Some(2000),
        Field::Invalid => None,
    };
    let params = f.get(r, "params", |r, v| params(r, v, rate_limit));
    f.finish();
    let prefix = match prefix? {
        Some(p) => p,
        None => format!("/{}", name?),
    };
    Some(Osc { prefix, max_rate: max_rate.or(2000)? as u32, params: params.or(Vec::new())? })
}

fn params(r: &mut Report<'_>, v: &Val<'_>, osc_rate: Option<i64>) -> Option<Vec<OscParam>> {
    let unique = unique_addresses(r, v);
    let items = array(r, v, |r, item| match item.get_ref() {
        DeValue::Table(t) => {
            let f = Fields::open(r, &OSC_PARAM, Some(t), item.span());
            param(r, f, osc_rate)
        }
        other => {
            type_error(r, item.span(), "a table ([[osc.params]])", other);
            None
        }
    })?;
    unique.then(|| items.into_iter().map(|(p, _)| p).collect())
}

/// Reports every address declared twice, reading the raw values so that a duplicate is found
/// even when one of the two tables has other errors.
fn unique_addresses(r: &mut Report<'_>, v: &Val<'_>) -> bool {
    let DeValue::Array(items) = v.get_ref() else { return true };
    let addresses: Vec<(&str, Range<usize>)> = items
        .iter()
        .filter_map(|it| match it.get_ref() {
            DeValue::Table(t) => t.get("address"),
            _ => None,
        })
        .filter_map(|a| match a.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), a.span())),
            _ => None,
        })
        .collect();
    let mut ok = true;
    for (i, (a, span)) in addresses.iter().enumerate() {
        if addresses[..i].iter().any(|(b, _)| a == b) {
            let first = crate::diag::locate(
                r.text(),
                addresses.iter().find(|(b, _)| a == b).map_or(0, |(_, s)| s.start),
            );
            r.error(
                span.clone(),
                format!("address \"{a}\" is already declared on line {}", first.line),
            )
            .hints
            .push("merge the two [[osc.params]] tables".into());
            ok = false;
        }
    }
    ok
}

/// One `[[osc.params]]` table.
fn param(r: &mut Report<'_>, mut f: Fields<'_, '_>, osc_rate: Option<i64>) -> Option<OscParam> {
    let address = f.get(r, "address", |r, v| checked(r, v, values::osc_address));
    if !address.is_present() {
        r.error(f.at(), "missing required key \"address\" in [[osc.params]]");
    }
    let ty = f.required(r, "type", |r, v| one_of(r, v, keys::PARAM_TYPES));
    let kind = match ty {
        Some(ty) => kind(r, &mut f, ty),
        None => {
            // Without a valid type the type-specific keys cannot be judged.
            f.skip(&["range", "out_of_range", "max_len", "one_of"]);
            None
        }
    };
    let max_rate = f.get(r, "max_rate", |r, v| integer(r, v, 1, 100_000));
    if let (Field::Value(rate, span), Some(limit)) = (&max_rate, osc_rate)
        && *rate > limit
    {
        r.error(
            span.clone(),
            format!("max_rate {rate} is above the visualization's [osc] max_rate {limit}"),
        )
        .hints
        .push("it could never be reached; lower it or raise [osc] max_rate".into());
    }
    let coalesce = f.get(r, "coalesce", boolean).optional();
    f.finish();
    let kind = kind?;
    let coalesce = coalesce?.unwrap_or(matches!(
        kind,
        ParamKind::Float { .. } | ParamKind::Int { .. } | ParamKind::Bool | ParamKind::Color
    ));
    let max_rate = max_rate.optional()?.map(|n| n as u32);
    let address = match address {
        Field::Value(a, _) => a,
        _ => return None,
    };
    Some(OscParam { address, kind, max_rate, coalesce })
}

/// The type-specific keys: each only where it means something.
fn kind(r: &mut Report<'_>, f: &mut Fields<'_, '_>, ty: &str) -> Option<ParamKind> {
    // Keys that make no sense for the type are reported before their values are checked.
    let mut ok = true;
    for (key, allowed, types) in [
        ("range", matches!(ty, "float" | "int"), "float and int"),
        ("max_len", matches!(ty, "string" | "blob"), "string and blob"),
        ("one_of", ty == "string", "string"),
    ] {
        if let (Some(span), false) = (f.value_span(key), allowed) {
            r.error(span, format!("\"{key}\" is not allowed for type \"{ty}\" (only {types})"));
            ok = false;
        }
    }
    if let (Some(span), false) = (f.value_span("out_of_range"), f.has("range")) {
        r.error(span, "\"out_of_range\" needs a \"range\"");
        ok = false;
    }
    let range = f.get(r, "range", |r, v| if ok_for(ty, "range") { range(r, v, ty) } else { None });
    let out_of_range = f.get(r, "out_of_range", |r, v| one_of(r, v, keys::OUT_OF_RANGE));
    let max_len =
        f.get(
            r,
            "max_len",
            |r, v| if ok_for(ty, "max_len") { integer(r, v, 1, 65_536) } else { None },
        );
    let one_of_ =
        f.get(r, "one_of", |r, v| if ok_for(ty, "one_of") { array(r, v, string) } else { None });
    let out_of_range = match out_of_range.or("clamp")? {
        "reject" => OutOfRange::Reject,
        _ => OutOfRange::Clamp,
    };
    let range = range.optional()?;
    let max_len = max_len.optional()?.map(|n| n as usize);
    let choices = one_of_.optional()?;
    if let Some(choices) = &choices {
        ok &= check_choices(r, choices, max_len);
    }
    if !ok {
        return None;
    }
    Some(match (ty, range) {
        ("float", range) => ParamKind::Float { range: range.map(|(a, b, _)| (a, b)), out_of_range },
        ("int", range) => {
            ParamKind::Int { range: range.map(|(a, b, _)| (a as i64, b as i64)), out_of_range }
        }
        ("bool", _) => ParamKind::Bool,
        ("string", _) => ParamKind::String {
            max_len,
            one_of: choices.map(|c| c.into_iter().map(|(s, _)| s).collect()),
        },
        ("impulse", _) => ParamKind::Impulse,
        ("blob", _) => ParamKind::Blob { max_len: max_len.unwrap_or(DEFAULT_BLOB_LEN) },
        ("color", _) => ParamKind::Color,
        _ => ParamKind::Midi,
    })
}

/// Whether a type-specific key belongs to the type (its value is only checked then).
fn ok_for(ty: &str, key: &str) -> bool {
    match key {
        "range" => matches!(ty, "float" | "int"),
        "max_len" => matches!(ty, "string" | "blob"),
        _ => ty == "string",
    }
}

fn check_choices(
    r: &mut Report<'_>,
    choices: &[(String, Range<usize>)],
    max_len: Option<usize>,
) -> bool {
    let mut ok = no_duplicates(r, choices);
    for (c, span) in choices {
        if max_len.is_some_and(|m| c.len() > m) {
            r.error(span.clone(), format!("\"{c}\" is longer than max_len"));
            ok = false;
        }
    }
    ok
}

/// `[min, max]` with min < max; integers for `int` params. The third element is unused.
fn range(r: &mut Report<'_>, v: &Val<'_>, ty: &str) -> Option<(f64, f64, ())> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(r, v.span(), "[min, max]", v.get_ref());
        return None;
    };
    if items.len() != 2 {
        r.error(
            v.span(),
            format!("range needs exactly two numbers [min, max], found {}", items.len()),
        );
        return None;
    }
    let bound = |r: &mut Report<'_>, item: &Val<'_>| -> Option<f64> {
        if ty == "int" {
            integer(r, item, i64::from(i32::MIN), i64::from(i32::MAX)).map(|n| n as f64)
        } else {
            number(r, item)
        }
    };
    let (min, max) = (bound(r, &items[0]), bound(r, &items[1]));
    let (min, max) = (min?, max?);
    if min >= max {
        r.error(v.span(), format!("range minimum {min} is not below maximum {max}"));
        return None;
    }
    Some((min, max, ()))
}

pub(crate) fn midi(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Midi> {
    let inputs = f.get(r, "inputs", |r, v| array(r, v, |r, v| checked(r, v, port_glob)));
    let channels = f.get(r, "channels", |r, v| array(r, v, |r, v| integer(r, v, 1, 16)));
    let messages =
        f.get(r, "messages", |r, v| array(r, v, |r, v| one_of(r, v, keys::MIDI_MESSAGES)));
    let sysex = f.get(r, "sysex", boolean).or(false);
    let max_rate = f.get(r, "max_rate", |r, v| integer(r, v, 1, 100_000)).or(1000);
    f.finish();
    let inputs = inputs.or(vec![("*".to_string(), 0..0)])?;
    let channels = channels.or(Vec::new())?;
    let messages_span = messages.span();
    let messages = messages.optional()?;
    let mut ok = no_duplicates(r, &inputs) & no_duplicates(r, &channels);
    if let Some(m) = &messages {
        ok &= no_duplicates(r, m);
        if m.is_empty() && !sysex.unwrap_or(false) {
            r.error(messages_span.unwrap_or(f.at()), "messages = [] accepts no MIDI at all")
                .hints
                .push(
                    "remove the key for the default (channel voice messages) or the [midi] table"
                        .into(),
                );
            ok = false;
        }
    }
    let messages = match messages {
        Some(m) => m.iter().map(|(m, _)| message_kind(m)).collect(),
        None => default_messages(),
    };
    if !ok {
        return None;
    }
    Some(Midi {
        inputs: inputs.into_iter().map(|(s, _)| s).collect(),
        channels: channels.into_iter().map(|(c, _)| c as u8).collect(),
        messages,
        sysex: sysex?,
        max_rate: max_rate? as u32,
    })
}

/// Declares the parameters MIDI arrives at, so a policy with `[midi]` needs no
/// `[[osc.params]]` for it: `/midi` (type `midi`) and, with `sysex = true`, `/midi/sysex` (a
/// blob: the port id, then the SysEx message). A policy may declare `/midi` itself to give it a
/// `max_rate` or `coalesce`, but with another type it could never receive MIDI: an error.
pub(crate) fn add_midi_params(
    r: &mut Report<'_>,
    osc: &mut Osc,
    midi: &Midi,
    at: Range<usize>,
) -> bool {
    let blob = ParamKind::Blob { max_len: 1 + MIDI_SYSEX_CAP };
    let mut wanted = vec![(MIDI_ADDRESS, ParamKind::Midi, "midi")];
    if midi.sysex {
        wanted.push((MIDI_SYSEX_ADDRESS, blob, "blob"));
    }
    let mut ok = true;
    for (address, kind, type_name) in wanted {
        match osc.params.iter().find(|p| p.address == address) {
            None => osc.params.push(OscParam {
                address: address.into(),
                kind,
                max_rate: None,
                coalesce: false,
            }),
            Some(p)
                if p.kind == kind
                    || (type_name == "blob"
                        && matches!(p.kind, ParamKind::Blob { max_len } if max_len > MIDI_SYSEX_CAP)) =>
                {}
            Some(_) => {
                r.error(at.clone(), format!("[midi] delivers MIDI at {address}, which [[osc.params]] declares with another type"))
                    .hints
                    .push(format!("remove that [[osc.params]] entry (it is implied) or make its type \"{type_name}\""));
                ok = false;
            }
        }
    }
    ok
}

/// Channel voice messages; clock and transport are high-rate realtime bytes, opt-in only.
fn default_messages() -> Vec<MidiMessageKind> {
    use MidiMessageKind::*;
    vec![Note, PolyAftertouch, Cc, Program, ChannelAftertouch, Pitchbend]
}

fn message_kind(m: &str) -> MidiMessageKind {
    use MidiMessageKind::*;
    match m {
        "note" => Note,
        "poly-aftertouch" => PolyAftertouch,
        "cc" => Cc,
        "program" => Program,
        "channel-aftertouch" => ChannelAftertouch,
        "pitchbend" => Pitchbend,
        "clock" => Clock,
        _ => Transport,
    }
}

fn port_glob(s: &str) -> Result<String, crate::diag::Bad> {
    if s.is_empty() || s.len() > 128 {
        return Err(crate::diag::Bad::new("a port glob has 1 to 128 characters"));
    }
    Ok(s.to_string())
}
