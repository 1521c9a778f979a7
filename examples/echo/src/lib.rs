//! The echo example application.

#![no_std]
