//! MIDI 1.0 stream parser, validator and filter; ALSA input behind a feature.

#![forbid(unsafe_code)]
