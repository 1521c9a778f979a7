//! The mirage-rs TCP/IP stack: under construction in this session.

#![no_std]
#![forbid(unsafe_code)]
