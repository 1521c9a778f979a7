//! Descriptor tables: the GDT with its TSS (whose interrupt stack table
//! gives interrupt handlers stacks of their own) and the IDT.
//!
//! The target's ABI lets functions use 128 bytes below the stack pointer
//! (the red zone), which an interrupt taken on the same stack would
//! overwrite. Every gate this module builds therefore switches to an IST
//! stack.

use alloc::boxed::Box;
use core::arch::asm;
use core::mem::size_of;

/// The selector of the 64-bit kernel code segment (as in the boot GDT).
pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
/// The selector of the kernel data segment (as in the boot GDT).
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;
/// The selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

/// The 64-bit task state segment: only its interrupt stack table is used.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Default)]
pub struct TaskStateSegment {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}

impl TaskStateSegment {
    /// A TSS whose IST entry `i + 1` is `stack_tops[i]` (the address one past
    /// the top of a 16-byte-aligned stack), with no I/O permission map.
    pub fn new(stack_tops: [u64; 7]) -> TaskStateSegment {
        TaskStateSegment {
            interrupt_stacks: stack_tops,
            // Past the segment's limit: no I/O map, every port needs ring 0.
            io_map_base: size_of::<TaskStateSegment>() as u16,
            ..TaskStateSegment::default()
        }
    }
}

/// The GDT: null, kernel code, kernel data, and the two slots of the TSS
/// descriptor.
#[repr(C, align(16))]
pub struct GlobalDescriptorTable([u64; 5]);

impl GlobalDescriptorTable {
    /// The kernel's segments and a descriptor for `tss`.
    pub fn new(tss: &'static TaskStateSegment) -> GlobalDescriptorTable {
        let base = tss as *const TaskStateSegment as u64;
        let limit = (size_of::<TaskStateSegment>() - 1) as u64;
        // Available 64-bit TSS (type 9), present.
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        let high = base >> 32;
        GlobalDescriptorTable([0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, low, high])
    }
}

/// The pointer `lgdt` and `lidt` take.
#[repr(C, packed(2))]
struct TablePointer {
    limit: u16,
    base: u64,
}

/// Loads `gdt`, reloads every segment register from it and loads its TSS.
///
/// `gdt` is `'static` and mutable because the CPU keeps using it and marks
/// the TSS descriptor busy in place.
pub fn load_gdt(gdt: &'static mut GlobalDescriptorTable) {
    let pointer = TablePointer { limit: (size_of::<GlobalDescriptorTable>() - 1) as u16, base: gdt as *mut _ as u64 };
    // SAFETY: the table holds the same code and data segments as the boot
    // GDT, so reloading CS (by a far return) and the data segments changes
    // nothing for running code; the TSS it describes is 'static. The table
    // outlives every later use because it is 'static.
    unsafe {
        asm!(
            "lgdt [{pointer}]",
            "push {code}",
            "lea {scratch}, [rip + 2f]",
            "push {scratch}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            pointer = in(reg) &pointer,
            code = in(reg) u64::from(KERNEL_CODE_SELECTOR),
            data = in(reg) KERNEL_DATA_SELECTOR,
            tss = in(reg) TSS_SELECTOR,
            scratch = out(reg) _,
        )
    };
}

/// One IDT gate.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

/// The interrupt descriptor table.
#[repr(C, align(16))]
pub struct InterruptDescriptorTable([Gate; 256]);

impl InterruptDescriptorTable {
    /// A table with no gate present: any interrupt is a double fault.
    pub fn new() -> Box<InterruptDescriptorTable> {
        Box::new(InterruptDescriptorTable([Gate::default(); 256]))
    }

    /// Makes `vector` an interrupt gate (interrupts masked while the handler
    /// runs) to `handler`, on IST stack `ist` (1 to 7).
    ///
    /// # Safety
    ///
    /// `handler` is the address of code that handles an interrupt frame for
    /// this vector (with or without error code as the vector has) and
    /// returns with `iretq`; IST entry `ist` of the loaded TSS is a stack no
    /// other gate that can nest with this one uses.
    pub unsafe fn set_gate(&mut self, vector: u8, handler: u64, ist: u8) {
        self.0[usize::from(vector)] = Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE_SELECTOR,
            ist: ist & 0x7,
            attributes: 0x8e, // present, ring 0, 64-bit interrupt gate
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }

    /// Makes this the CPU's IDT for good.
    pub fn load(self: Box<Self>) {
        let table: &'static InterruptDescriptorTable = Box::leak(self);
        let pointer =
            TablePointer { limit: (size_of::<InterruptDescriptorTable>() - 1) as u16, base: table as *const _ as u64 };
        // SAFETY: the table is leaked, so it lives as long as the CPU uses it;
        // every present gate was set through `set_gate`, whose contract makes
        // it a valid handler.
        unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
    }
}
