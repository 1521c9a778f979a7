//! The kv example application.

#![no_std]
