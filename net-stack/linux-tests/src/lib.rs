//! Interoperation tests of `mirage-net-stack` against the Linux kernel: see `tests/`.
