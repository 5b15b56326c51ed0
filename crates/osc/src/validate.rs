//! Validation of one message's arguments against a parameter of the policy.
//!
//! The rules, per parameter type (DESIGN §6):
//! - `float`: one `f`, `d`, `i` or `h` (int→float is the only coercion); NaN and ±Inf are
//!   refused; `range` clamps or refuses per `out_of_range`; delivered as `f` (a value beyond
//!   the f32 range counts as out of range).
//! - `int`: one `i` or `h`, or a finite `f`/`d` rounded to the nearest integer (float→int is
//!   the other half of the only coercion); `range` clamps or refuses; delivered as `i`, so
//!   the effective range is also limited to i32.
//! - `bool`: `T` or `F`, or the numbers 0 and 1 as `i`, `h`, `f` or `d` (many controllers
//!   send toggles as 0.0/1.0); delivered as `T`/`F`.
//! - `impulse`: no argument, or a single `I` or `T`; delivered without an argument.
//! - `string`: one `s` or `S`, valid UTF-8 without control characters, at most `max_len`
//!   bytes, one of `one_of` when set; delivered as `s`.
//! - `blob`: one `b` of at most `max_len` bytes.
//! - `color`: one `r`. `midi`: one `m`.

use vitrine_policy::{OutOfRange, ParamKind};

use crate::Reason;
use crate::encode::Value;
use crate::wire::{Arg, Message};

/// Validates `message`'s arguments against `kind`; the address was already matched.
pub fn validate<'a>(kind: &ParamKind, message: &Message<'a>) -> Result<Value<'a>, Reason> {
    let mut args = message.args();
    let first = args.next();
    let extra = args.next().is_some();
    if let ParamKind::Impulse = kind {
        return match (first, extra) {
            (None | Some(Arg::Infinitum | Arg::True), false) => Ok(Value::Impulse),
            (Some(_), false) => Err(Reason::WrongType),
            (_, true) => Err(Reason::WrongArity),
        };
    }
    let (Some(arg), false) = (first, extra) else {
        return Err(Reason::WrongArity);
    };
    validate_one(kind, arg)
}

fn validate_one<'a>(kind: &ParamKind, arg: Arg<'a>) -> Result<Value<'a>, Reason> {
    match kind {
        ParamKind::Float { range, out_of_range } => float(arg, *range, *out_of_range),
        ParamKind::Int { range, out_of_range } => int(arg, *range, *out_of_range),
        ParamKind::Bool => boolean(arg),
        ParamKind::String { max_len, one_of } => string(arg, *max_len, one_of.as_deref()),
        ParamKind::Impulse => Ok(Value::Impulse),
        ParamKind::Blob { max_len } => match arg {
            Arg::Blob(b) if b.len() <= *max_len => Ok(Value::Blob(b)),
            Arg::Blob(_) => Err(Reason::TooLong),
            _ => Err(Reason::WrongType),
        },
        ParamKind::Color => match arg {
            Arg::Color(c) => Ok(Value::Color(c)),
            _ => Err(Reason::WrongType),
        },
        ParamKind::Midi => match arg {
            Arg::Midi(m) => Ok(Value::Midi(m)),
            _ => Err(Reason::WrongType),
        },
    }
}

fn number(arg: Arg<'_>) -> Result<f64, Reason> {
    let v = match arg {
        Arg::Float(v) => f64::from(v),
        Arg::Double(v) => v,
        Arg::Int(v) => f64::from(v),
        // i64 → f64 may round; that is the documented int→float coercion.
        Arg::Long(v) => v as f64,
        _ => return Err(Reason::WrongType),
    };
    if v.is_finite() { Ok(v) } else { Err(Reason::NotFinite) }
}

fn float(
    arg: Arg<'_>,
    range: Option<(f64, f64)>,
    oor: OutOfRange,
) -> Result<Value<'static>, Reason> {
    let v = number(arg)?;
    let max = f64::from(f32::MAX);
    let (lo, hi) = range.map_or((-max, max), |(lo, hi)| (lo.max(-max), hi.min(max)));
    let v = fit(v, lo, hi, oor)?;
    Ok(Value::Float(v as f32))
}

fn int(arg: Arg<'_>, range: Option<(i64, i64)>, oor: OutOfRange) -> Result<Value<'static>, Reason> {
    let v: i64 = match arg {
        Arg::Int(v) => i64::from(v),
        Arg::Long(v) => v,
        Arg::Float(_) | Arg::Double(_) => {
            let f = number(arg)?.round();
            // Saturating cast; a float beyond i64 is far outside any i32 range anyway.
            f as i64
        }
        _ => return Err(Reason::WrongType),
    };
    let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
    let lo = lo.max(i64::from(i32::MIN));
    let hi = hi.min(i64::from(i32::MAX));
    let v = if v < lo || v > hi {
        match oor {
            OutOfRange::Clamp => v.clamp(lo, hi),
            OutOfRange::Reject => return Err(Reason::OutOfRange),
        }
    } else {
        v
    };
    i32::try_from(v).map(Value::Int).map_err(|_| Reason::OutOfRange)
}

fn fit(v: f64, lo: f64, hi: f64, oor: OutOfRange) -> Result<f64, Reason> {
    if v >= lo && v <= hi {
        return Ok(v);
    }
    match oor {
        OutOfRange::Clamp => Ok(v.clamp(lo, hi)),
        OutOfRange::Reject => Err(Reason::OutOfRange),
    }
}

fn boolean(arg: Arg<'_>) -> Result<Value<'static>, Reason> {
    match arg {
        Arg::True => Ok(Value::Bool(true)),
        Arg::False => Ok(Value::Bool(false)),
        Arg::Int(_) | Arg::Long(_) | Arg::Float(_) | Arg::Double(_) => match number(arg)? {
            0.0 => Ok(Value::Bool(false)),
            1.0 => Ok(Value::Bool(true)),
            _ => Err(Reason::OutOfRange),
        },
        _ => Err(Reason::WrongType),
    }
}

fn string<'a>(
    arg: Arg<'a>,
    max_len: Option<usize>,
    one_of: Option<&[String]>,
) -> Result<Value<'a>, Reason> {
    let (Arg::Str(bytes) | Arg::Symbol(bytes)) = arg else {
        return Err(Reason::WrongType);
    };
    if max_len.is_some_and(|max| bytes.len() > max) {
        return Err(Reason::TooLong);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| Reason::BadString)?;
    if s.chars().any(char::is_control) {
        return Err(Reason::BadString);
    }
    if one_of.is_some_and(|allowed| !allowed.iter().any(|a| a == s)) {
        return Err(Reason::NotOneOf);
    }
    Ok(Value::Str(s))
}
