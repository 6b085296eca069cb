//! Wire-protocol codecs: sans-IO decoders and encoders, one folder per protocol.
pub mod postgres;
