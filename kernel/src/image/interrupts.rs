//! Interrupt entry: assembly stubs for vectors 0–63, the Rust dispatcher,
//! and the tables (GDT with TSS, IDT) that route every vector to its stub
//! on an interrupt stack of its own.
//!
//! Each stub pushes a zero where the CPU pushes no error code, then the
//! vector, and jumps to a common path that saves the caller-saved
//! registers and the SSE state (handlers are Rust, and Rust uses SSE),
//! aligns the stack and calls `mirage_kernel_interrupt`.

use alloc::boxed::Box;
use core::arch::global_asm;
use core::fmt::Write as _;

use crate::arch::descriptors::{GlobalDescriptorTable, InterruptDescriptorTable, TaskStateSegment};
use crate::arch::serial::{Uart16550, COM1_IRQ};
use crate::arch::{cpu, pic, power};

/// The status the kernel exits with on a CPU exception.
pub const EXCEPTION_STATUS: u8 = 102;

/// Number of vectors with a stub: the 32 exceptions, the 16 PIC lines and
/// the I/O APIC line slots (`crate::interrupt`).
const STUB_COUNT: usize = crate::interrupt::FIRST_VECTOR as usize + crate::interrupt::MAX_LINES;

/// The local APIC's spurious-interrupt vector (see `arch::lapic`).
const APIC_SPURIOUS_VECTOR: u8 = 0xff;

/// The size of each interrupt stack.
const IST_STACK_SIZE: usize = 16 * 1024;

/// IST slots: double fault; NMI and machine check; other exceptions;
/// hardware interrupts. None of these nest within their own group except
/// a fault inside an exception handler, which is fatal anyway (and a
/// double fault has its own stack).
const IST_DOUBLE_FAULT: u8 = 1;
const IST_NMI: u8 = 2;
const IST_EXCEPTION: u8 = 3;
const IST_IRQ: u8 = 4;

global_asm!(
    r#"
    .section .text.interrupts, "ax"
    .macro mirage_isr vec
    .balign 16
mirage_isr_\vec:
    .if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push $0
    .endif
    push $\vec
    jmp mirage_isr_common
    .endm

    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    mirage_isr \v
    .endr

    /* The local APIC's spurious interrupt: not acknowledged, nothing to do. */
    .balign 16
mirage_isr_apic_spurious:
    iretq

mirage_isr_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rdi
    push %rbp
    mov %rsp, %rbp
    and $-16, %rsp
    sub $512, %rsp
    fxsave64 (%rsp)
    cld
    call mirage_kernel_interrupt
    fxrstor64 (%rsp)
    mov %rbp, %rsp
    pop %rbp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp
    iretq

    .section .rodata.interrupts, "a"
    .balign 8
    .global mirage_isr_table
mirage_isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    .quad mirage_isr_\v
    .endr
    .quad mirage_isr_apic_spurious
    "#,
    options(att_syntax)
);

extern "C" {
    /// The addresses of the stubs, by vector, then the APIC spurious stub.
    static mirage_isr_table: [u64; STUB_COUNT + 1];
}

/// What the common stub saved, lowest address first.
#[repr(C)]
#[derive(Debug)]
struct InterruptFrame {
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection exception",
    "VMM communication exception",
    "security exception",
    "reserved",
];

#[no_mangle]
extern "C" fn mirage_kernel_interrupt(frame: &InterruptFrame) {
    let vector = frame.vector as usize;
    if vector < 32 {
        let mut uart = Uart16550::com1();
        let _ = write!(
            uart,
            "\nkernel exception: {} (vector {vector}), error code {:#x}, at rip {:#x}, rsp {:#x}",
            EXCEPTION_NAMES[vector], frame.error_code, frame.rip, frame.rsp
        );
        if vector == 14 {
            let _ = write!(uart, ", faulting address {:#x}", cpu::read_cr2());
        }
        let _ = writeln!(uart);
        uart.flush();
        power::power_off(EXCEPTION_STATUS);
    }
    if vector >= usize::from(crate::interrupt::FIRST_VECTOR) {
        crate::interrupt::on_vector(vector as u8);
        return;
    }
    let line = (vector - 32) as u8;
    // A spurious IRQ 7 or 15 is not in service and must not be acknowledged
    // at its own PIC (a spurious 15 still needs the master's EOI).
    if (line == 7 || line == 15) && !pic::in_service(line) {
        if line == 15 {
            pic::end_of_interrupt(0);
        }
        return;
    }
    if line == COM1_IRQ {
        crate::platform::on_serial_interrupt();
    }
    // IRQ 0 (the PIT) needs nothing but the acknowledgement: it only wakes
    // the halted executor, which reads the clock itself.
    pic::end_of_interrupt(line);
}

/// A stack for the interrupt stack table, 16-byte aligned as the CPU's
/// stack switch expects its top.
#[repr(C, align(16))]
struct InterruptStack([u8; IST_STACK_SIZE]);

/// Installs the GDT with the TSS and the IDT, routes the PIC's lines to
/// vectors 32–47 with only the PIT's and COM1's unmasked, finds the I/O
/// APICs for device lines (vectors from 48, all masked until claimed) and
/// enables COM1's receive interrupt. Interrupts stay masked in the CPU.
pub fn init() {
    let mut tops = [0u64; 7];
    for top in tops.iter_mut().take(IST_IRQ as usize) {
        // Leaked: the CPU uses these stacks for the rest of the run.
        let stack: &'static mut InterruptStack = Box::leak(Box::new(InterruptStack([0; IST_STACK_SIZE])));
        *top = stack.0.as_ptr_range().end as u64;
    }
    let tss: &'static TaskStateSegment = Box::leak(Box::new(TaskStateSegment::new(tops)));
    crate::arch::descriptors::load_gdt(Box::leak(Box::new(GlobalDescriptorTable::new(tss))));

    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: `mirage_isr_table` is the immutable table of stub addresses
    // defined in the assembly above, with STUB_COUNT + 1 entries.
    let stubs: &[u64; STUB_COUNT + 1] = unsafe { &mirage_isr_table };
    for (vector, &stub) in stubs[..STUB_COUNT].iter().enumerate() {
        let ist = match vector {
            8 => IST_DOUBLE_FAULT,
            2 | 18 => IST_NMI,
            0..32 => IST_EXCEPTION,
            _ => IST_IRQ,
        };
        // SAFETY: each stub handles its own vector's frame (an error code is
        // pushed by the CPU exactly for the vectors the stub macro lists)
        // and returns with iretq; the IST groups above never nest with
        // themselves (gates mask interrupts; exceptions in handlers end the
        // run; a double fault has its own stack).
        unsafe { idt.set_gate(vector as u8, stub, ist) };
    }
    // SAFETY: the last table entry is the APIC spurious stub, which returns
    // with iretq at once; it runs on the IRQ stack, with interrupts masked.
    unsafe { idt.set_gate(APIC_SPURIOUS_VECTOR, stubs[STUB_COUNT], IST_IRQ) };
    idt.load();

    pic::remap_and_mask();
    pic::unmask(COM1_IRQ);
    // Without a local APIC the PIC drives the CPU's interrupt pin directly.
    crate::arch::lapic::enable_virtual_wire();
    crate::interrupt::init();
    Uart16550::com1().enable_receive_interrupt();
}
