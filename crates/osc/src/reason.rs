//! Why a packet or a message did not reach a visualization.
//!
//! Every rejection and every drop has exactly one reason; its kebab-case label is the
//! `reason` label of `vitrine_osc_rejected_total` and `vitrine_osc_dropped_total`, so the
//! labels are a contract: add variants, never rename them.

/// One reason a datagram, a message or a queued delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum Reason {
    // Structural (the pre-check refuses the whole datagram).
    #[error("packet is larger than max_packet")]
    Oversized,
    #[error("packet ends inside a field")]
    Truncated,
    #[error("packet or bundle element length is not a multiple of 4")]
    Misaligned,
    #[error("string is not NUL-terminated inside the packet")]
    UnterminatedString,
    #[error("padding bytes are not NUL")]
    BadPadding,
    #[error("address is not an OSC address")]
    BadAddress,
    #[error("type tag string does not start with ','")]
    BadTypeTag,
    #[error("type tag is not an OSC type")]
    UnknownTypeTag,
    #[error("type tag is valid OSC but not accepted (arrays)")]
    UnsupportedTypeTag,
    #[error("blob length points past the end of the packet")]
    BlobOverflow,
    #[error("bundle element size points past the end of the bundle")]
    ElementOverflow,
    #[error("bundles nested deeper than the limit")]
    BundleTooDeep,
    #[error("bytes left over after the last field")]
    TrailingBytes,
    // Ingress (the datagram never reached the decoder).
    #[error("datagram was larger than the receive buffer")]
    TruncatedDatagram,
    #[error("sender is outside allow_from")]
    SourceNotAllowed,
    // Validation (one message of a packet is refused).
    #[error("address matches no known parameter")]
    UnknownAddress,
    #[error("argument type does not fit the parameter")]
    WrongType,
    #[error("wrong number of arguments for the parameter")]
    WrongArity,
    #[error("number is NaN or infinite")]
    NotFinite,
    #[error("number is outside the parameter's range")]
    OutOfRange,
    #[error("string is not UTF-8 or contains control characters")]
    BadString,
    #[error("string or blob is longer than max_len")]
    TooLong,
    #[error("string is not one of the allowed values")]
    NotOneOf,
    #[error("bundle timetag is too far in the future")]
    FutureTimetag,
    // Rates.
    #[error("the source exceeded its rate")]
    RateSource,
    #[error("the visualization exceeded its max_rate")]
    RateVisualization,
    #[error("the parameter exceeded its max_rate")]
    RateParam,
    #[error("the source is blocked for a cooldown")]
    SourceBlocked,
    // Delivery (counted per visualization).
    #[error("the outbox was full and the oldest message was dropped")]
    OutboxFull,
    #[error("a newer value of a coalescing parameter replaced this one")]
    Coalesced,
    #[error("the send to the visualization failed")]
    SendFailed,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [Reason; 31] = [
        Reason::Oversized,
        Reason::Truncated,
        Reason::Misaligned,
        Reason::UnterminatedString,
        Reason::BadPadding,
        Reason::BadAddress,
        Reason::BadTypeTag,
        Reason::UnknownTypeTag,
        Reason::UnsupportedTypeTag,
        Reason::BlobOverflow,
        Reason::ElementOverflow,
        Reason::BundleTooDeep,
        Reason::TrailingBytes,
        Reason::TruncatedDatagram,
        Reason::SourceNotAllowed,
        Reason::UnknownAddress,
        Reason::WrongType,
        Reason::WrongArity,
        Reason::NotFinite,
        Reason::OutOfRange,
        Reason::BadString,
        Reason::TooLong,
        Reason::NotOneOf,
        Reason::FutureTimetag,
        Reason::RateSource,
        Reason::RateVisualization,
        Reason::RateParam,
        Reason::SourceBlocked,
        Reason::OutboxFull,
        Reason::Coalesced,
        Reason::SendFailed,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::Truncated => "truncated",
            Reason::Misaligned => "misaligned",
            Reason::UnterminatedString => "unterminated-string",
            Reason::BadPadding => "bad-padding",
            Reason::BadAddress => "bad-address",
            Reason::BadTypeTag => "bad-type-tag",
            Reason::UnknownTypeTag => "unknown-type-tag",
            Reason::UnsupportedTypeTag => "unsupported-type-tag",
            Reason::BlobOverflow => "blob-overflow",
            Reason::ElementOverflow => "element-overflow",
            Reason::BundleTooDeep => "bundle-too-deep",
            Reason::TrailingBytes => "trailing-bytes",
            Reason::TruncatedDatagram => "truncated-datagram",
            Reason::SourceNotAllowed => "source-not-allowed",
            Reason::UnknownAddress => "unknown-address",
            Reason::WrongType => "wrong-type",
            Reason::WrongArity => "wrong-arity",
            Reason::NotFinite => "not-finite",
            Reason::OutOfRange => "out-of-range",
            Reason::BadString => "bad-string",
            Reason::TooLong => "too-long",
            Reason::NotOneOf => "not-one-of",
            Reason::FutureTimetag => "future-timetag",
            Reason::RateSource => "rate-source",
            Reason::RateVisualization => "rate-visualization",
            Reason::RateParam => "rate-param",
            Reason::SourceBlocked => "source-blocked",
            Reason::OutboxFull => "outbox-full",
            Reason::Coalesced => "coalesced",
            Reason::SendFailed => "send-failed",
        }
    }

    /// True for reasons found by the structural pre-check (the whole datagram is refused).
    pub fn is_structural(self) -> bool {
        (self as usize) <= (Reason::TrailingBytes as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_labels_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(seen.insert(r.as_str()), "duplicate label {}", r.as_str());
        }
    }
}
