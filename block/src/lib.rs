//! Block layers and key-value stores for mirage-rs: under construction in this session.

#![no_std]
#![forbid(unsafe_code)]
