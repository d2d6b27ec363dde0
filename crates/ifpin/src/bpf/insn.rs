//! eBPF instructions as a newtype, built by named constructors.
//!
//! One [`Insn`] is the kernel's 8-byte `struct bpf_insn` (opcode, destination and source
//! registers, a 16-bit offset, a 32-bit immediate). The constructors are named after what the
//! instruction does (`mov64_imm`, `ldx_mem`, `jmp_imm`, `call`, `exit`), so a program reads
//! like the kernel's own `filter.h` macros and never shows a hex opcode. The encodings follow
//! `Documentation/bpf/standardization/instruction-set.rst`.

use std::fmt;

/// A register: `r0` (return value), `r1`–`r5` (helper arguments, clobbered by calls),
/// `r6`–`r9` (kept across calls), `r10` (read-only frame pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    /// Return value of helpers and of the program.
    R0 = 0,
    /// First helper argument; the context pointer on entry.
    R1 = 1,
    /// Second helper argument.
    R2 = 2,
    /// Third helper argument.
    R3 = 3,
    /// Fourth helper argument.
    R4 = 4,
    /// Fifth helper argument.
    R5 = 5,
    /// Callee-saved.
    R6 = 6,
    /// Callee-saved.
    R7 = 7,
    /// Callee-saved.
    R8 = 8,
    /// Callee-saved.
    R9 = 9,
    /// Frame pointer (read-only); the stack is the 512 bytes below it.
    R10 = 10,
}

/// The width of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 1 byte (`BPF_B`).
    B,
    /// 2 bytes (`BPF_H`).
    H,
    /// 4 bytes (`BPF_W`).
    W,
    /// 8 bytes (`BPF_DW`).
    DW,
}

impl Size {
    const fn code(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// A 64-bit arithmetic operation (`BPF_ALU64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// `dst += src`.
    Add,
    /// `dst -= src`.
    Sub,
    /// `dst |= src`.
    Or,
    /// `dst &= src`.
    And,
    /// `dst <<= src`.
    Lsh,
    /// `dst >>= src` (logical).
    Rsh,
    /// `dst = src`.
    Mov,
}

impl AluOp {
    const fn code(self) -> u8 {
        match self {
            AluOp::Add => 0x00,
            AluOp::Sub => 0x10,
            AluOp::Or => 0x40,
            AluOp::And => 0x50,
            AluOp::Lsh => 0x60,
            AluOp::Rsh => 0x70,
            AluOp::Mov => 0xb0,
        }
    }
}

/// A conditional jump's comparison (64-bit, unsigned unless said).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `>` unsigned.
    Gt,
    /// `>=` unsigned.
    Ge,
    /// `<` unsigned.
    Lt,
    /// `<=` unsigned.
    Le,
    /// `dst & src != 0`.
    Set,
}

impl Cond {
    const fn code(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Ge => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::Lt => 0xa0,
            Cond::Le => 0xb0,
        }
    }
}

/// A kernel helper function a program may call (`enum bpf_func_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Helper {
    /// `bpf_map_lookup_elem(map, key)`: a pointer to the value, or NULL.
    MapLookupElem = 1,
    /// `bpf_skb_load_bytes(skb, offset, to, len)`: copies packet bytes to the stack.
    SkbLoadBytes = 26,
    /// `bpf_setsockopt(ctx, level, optname, optval, optlen)`.
    Setsockopt = 49,
}

// Instruction classes and modes.
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_ATOMIC: u8 = 0xc0;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;
/// `BPF_PSEUDO_MAP_FD`: the source register of a 64-bit load that names a map by fd.
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_ADD` as an atomic operation's immediate.
const ATOMIC_ADD: i32 = 0x00;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst as u8) | ((src as u8) << 4),
            off,
            imm,
        }
    }

    /// The opcode byte.
    pub const fn code(self) -> u8 {
        self.code
    }

    /// The destination register number.
    pub const fn dst(self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register number.
    pub const fn src(self) -> u8 {
        self.regs >> 4
    }

    /// The 16-bit offset (jump distance or memory offset).
    pub const fn off(self) -> i16 {
        self.off
    }

    /// The 32-bit immediate.
    pub const fn imm(self) -> i32 {
        self.imm
    }

    /// Whether this is a jump whose offset is relative to the next instruction.
    pub const fn is_jump(self) -> bool {
        self.code & 0x07 == CLASS_JMP && !matches!(self.code & 0xf0, JMP_CALL | JMP_EXIT)
    }

    /// The same instruction with another offset (the assembler patches jumps with it).
    pub const fn with_off(self, off: i16) -> Insn {
        Insn { off, ..self }
    }

    /// The instruction as the kernel reads it: little-endian `struct bpf_insn`.
    pub fn encode(self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[0] = self.code;
        bytes[1] = self.regs;
        bytes[2..4].copy_from_slice(&self.off.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.imm.to_le_bytes());
        u64::from_ne_bytes(bytes)
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::alu64_imm(AluOp::Mov, dst, imm)
    }

    /// `dst = src`.
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        Insn::alu64_reg(AluOp::Mov, dst, src)
    }

    /// `dst op= imm`, 64-bit.
    pub const fn alu64_imm(op: AluOp, dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU64 | op.code() | SRC_K, dst, Reg::R0, 0, imm)
    }

    /// `dst op= src`, 64-bit.
    pub const fn alu64_reg(op: AluOp, dst: Reg, src: Reg) -> Insn {
        Insn::new(CLASS_ALU64 | op.code() | SRC_X, dst, src, 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub const fn ldx_mem(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_LDX | MODE_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn stx_mem(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_STX | MODE_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn st_mem(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(CLASS_ST | MODE_MEM | size.code(), dst, Reg::R0, off, imm)
    }

    /// `lock *(u64 *)(dst + off) += src` (`BPF_ATOMIC | BPF_ADD`, the old `BPF_XADD`).
    pub const fn atomic_add64(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(
            CLASS_STX | MODE_ATOMIC | Size::DW.code(),
            dst,
            src,
            off,
            ATOMIC_ADD,
        )
    }

    /// `if dst <cond> imm goto +off` (the offset is usually patched by the assembler).
    pub const fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | cond.code() | SRC_K, dst, Reg::R0, off, imm)
    }

    /// `if dst <cond> src goto +off`.
    pub const fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_JMP | cond.code() | SRC_X, dst, src, off, 0)
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(CLASS_JMP | JMP_JA, Reg::R0, Reg::R0, off, 0)
    }

    /// `r0 = helper(r1, …, r5)`.
    pub const fn call(helper: Helper) -> Insn {
        Insn::new(CLASS_JMP | JMP_CALL, Reg::R0, Reg::R0, 0, helper as i32)
    }

    /// `return r0`.
    pub const fn exit() -> Insn {
        Insn::new(CLASS_JMP | JMP_EXIT, Reg::R0, Reg::R0, 0, 0)
    }

    /// `dst = map` by file descriptor: the two-slot `BPF_LD | BPF_DW | BPF_IMM` with
    /// `BPF_PSEUDO_MAP_FD`, which the kernel turns into a map pointer at load time.
    pub const fn ld_map_fd(dst: Reg, map_fd: i32) -> [Insn; 2] {
        [
            Insn {
                code: CLASS_LD | MODE_IMM | Size::DW.code(),
                regs: (dst as u8) | (PSEUDO_MAP_FD << 4),
                off: 0,
                imm: map_fd,
            },
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0,
            },
        ]
    }

    /// `dst = imm64`: the two-slot 64-bit immediate load.
    pub const fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        [
            Insn::new(
                CLASS_LD | MODE_IMM | Size::DW.code(),
                dst,
                Reg::R0,
                0,
                imm as u32 as i32,
            ),
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: (imm >> 32) as u32 as i32,
            },
        ]
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code,
            self.dst(),
            self.src(),
            self.off,
            self.imm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected bytes are those of the kernel's own macros in `include/linux/filter.h`
    // (BPF_MOV64_IMM, BPF_LDX_MEM, BPF_EXIT_INSN, ...), written out by hand.
    fn bytes(insn: Insn) -> [u8; 8] {
        insn.encode().to_ne_bytes()
    }

    #[test]
    fn encodes_like_the_kernel_macros() {
        assert_eq!(
            bytes(Insn::mov64_imm(Reg::R0, 1)),
            [0xb7, 0x00, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::mov64_reg(Reg::R6, Reg::R1)),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ldx_mem(Size::W, Reg::R2, Reg::R6, 4)),
            [0x61, 0x62, 4, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::stx_mem(Size::W, Reg::R6, Reg::R7, 0)),
            [0x63, 0x76, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::st_mem(Size::W, Reg::R10, -4, 0)),
            [0x62, 0x0a, 0xfc, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::jmp_imm(Cond::Eq, Reg::R2, 2, 3)),
            [0x15, 0x02, 3, 0, 2, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::jmp_reg(Cond::Ne, Reg::R8, Reg::R7, -2)),
            [0x5d, 0x78, 0xfe, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::call(Helper::MapLookupElem)),
            [0x85, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(bytes(Insn::exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            bytes(Insn::atomic_add64(Reg::R0, Reg::R1, 0)),
            [0xdb, 0x10, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn map_loads_take_two_slots() {
        let [first, second] = Insn::ld_map_fd(Reg::R1, 7);
        assert_eq!(bytes(first), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes(second), [0; 8]);
        let [lo, hi] = Insn::ld_imm64(Reg::R3, 0x0100_0000_0000_0002);
        assert_eq!(lo.imm(), 2);
        assert_eq!(hi.imm(), 0x0100_0000);
    }

    #[test]
    fn only_real_jumps_are_jumps() {
        assert!(Insn::ja(0).is_jump());
        assert!(Insn::jmp_imm(Cond::Set, Reg::R1, 1, 0).is_jump());
        assert!(!Insn::call(Helper::Setsockopt).is_jump());
        assert!(!Insn::exit().is_jump());
        assert!(!Insn::mov64_imm(Reg::R0, 0).is_jump());
    }
}
