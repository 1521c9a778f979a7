//! The PVH entry point: from 32-bit protected mode to Rust in long mode.
//!
//! A PVH loader (QEMU's `-kernel`, Xen, Firecracker-class VMMs) enters at
//! the address published in the `XEN_ELFNOTE_PHYS32_ENTRY` note with paging
//! off, flat 32-bit segments, interrupts off and EBX holding the physical
//! address of the `hvm_start_info` structure. The trampoline below:
//!
//! 1. zeroes `.bss` (which holds its page tables and stack);
//! 2. identity-maps the first 4 GiB with 2 MiB pages, the top GiB (where
//!    the LAPIC, IOAPIC and virtio-mmio registers live) uncached;
//! 3. enables PAE, SSE (OSFXSR, OSXMMEXCPT; EM and TS cleared, MP set),
//!    long mode and paging, loads a GDT with a 64-bit code segment and
//!    jumps to it;
//! 4. switches to the boot stack and calls `mirage_kernel_entry` with the
//!    start-info address. SSE must be on before that call: the target's
//!    `core` uses SSE registers freely.

use core::arch::global_asm;

/// The size of the stack the kernel and the application run on. The
/// executor polls the whole application from it, so it is generous.
pub const BOOT_STACK_SIZE: usize = 512 * 1024;

global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* name size: "Xen\0" */
    .long 8                 /* descriptor size: a 64-bit address, as Linux publishes it */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi

    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $boot_pd, %edi
    mov $0x83, %eax         /* present, writable, 2 MiB page */
    xor %ecx, %ecx
1:
    mov %eax, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jb 1b
    mov $1536, %ecx
2:
    orl $0x18, (%edi,%ecx,8) /* cache disabled, write-through: device memory */
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    mov $boot_pdpt, %edi
    mov $boot_pd + 3, %eax
    xor %ecx, %ecx
3:
    mov %eax, (%edi,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jb 3b
    movl $boot_pdpt + 3, boot_pml4

    mov $boot_pml4, %eax
    mov %eax, %cr3

    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax   /* PAE, OSFXSR, OSXMMEXCPT */
    mov %eax, %cr4

    mov $0xc0000080, %ecx   /* EFER */
    rdmsr
    or $(1 << 8), %eax      /* LME */
    wrmsr

    mov %cr0, %eax
    and $~((1 << 2) | (1 << 3)), %eax             /* EM, TS off */
    or $((1 << 31) | (1 << 1) | 1), %eax          /* PG, MP, PE */
    mov %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $boot_long_mode

    .code64
boot_long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    fninit
    mov %esi, %edi
    call mirage_kernel_entry
    ud2

    .section .data.boot_gdt, "aw"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff  /* 0x08: 64-bit code, accessed */
    .quad 0x00cf93000000ffff  /* 0x10: data, accessed */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .balign 16
boot_stack:
    .skip {stack_size}
boot_stack_top:
    "#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);
