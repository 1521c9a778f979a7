//! Run mirage-rs applications as x86_64 unikernels on virtio devices.

#![no_std]
