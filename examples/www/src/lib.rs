//! The www example application.

#![no_std]
