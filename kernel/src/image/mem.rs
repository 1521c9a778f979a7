//! The memory functions the compiler calls, which libc would have defined.
//!
//! Written with `rep movsb`/`rep stosb`/`repe cmpsb` in inline assembly so
//! the optimiser cannot recognise a copy loop and turn it back into a call
//! to the very function being defined. Fast-string microcode makes these
//! competitive with vector loops on every x86_64 since Ivy Bridge.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest`; the regions must not overlap.
///
/// # Safety
///
/// `src` is valid for `n` bytes of reads, `dest` for `n` bytes of writes,
/// and they do not overlap (the C contract of `memcpy`).
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; the direction flag is clear (ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags))
    };
    dest
}

/// Copies `n` bytes from `src` to `dest`; the regions may overlap.
///
/// # Safety
///
/// `src` is valid for `n` bytes of reads and `dest` for `n` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src` or past its end: a forward copy reads each
        // byte before it can be overwritten.
        // SAFETY: the caller's contract; the direction flag is clear (ABI).
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags))
        };
    } else {
        // `dest` overlaps the end of `src`: copy backwards, from the last byte.
        // SAFETY: the caller's contract; n > 0 here, so `n - 1` is in bounds.
        // The direction flag is restored, as the ABI requires.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack)
            )
        };
    }
    dest
}

/// Sets `n` bytes at `dest` to the low byte of `value`.
///
/// # Safety
///
/// `dest` is valid for `n` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; the direction flag is clear (ABI).
    // Truncating `value` to a byte is what C's memset specifies.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8, options(nostack, preserves_flags))
    };
    dest
}

/// Compares `n` bytes: negative, zero or positive as the first differing
/// byte of `a` is below, equal to or above that of `b` (unsigned).
///
/// # Safety
///
/// `a` and `b` are valid for `n` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let (above, below): (u8, u8);
    // SAFETY: the caller's contract. `repe cmpsb` stops at the first
    // difference (flags from `a[i] - b[i]`) or after `n` equal bytes (ZF set,
    // so neither `seta` nor `setb` fires).
    unsafe {
        asm!(
            "repe cmpsb",
            "seta {above}",
            "setb {below}",
            above = out(reg_byte) above,
            below = out(reg_byte) below,
            inout("rcx") n => _,
            inout("rsi") a => _,
            inout("rdi") b => _,
            options(nostack, readonly)
        )
    };
    i32::from(above) - i32::from(below)
}

/// Whether `n` bytes are equal: zero if so (the compiler emits calls to it
/// for `==` on slices).
///
/// # Safety
///
/// As for [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract is memcmp's.
    unsafe { memcmp(a, b, n) }
}
