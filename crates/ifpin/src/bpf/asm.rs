//! A small assembler: instructions plus named labels, resolved into jump offsets.
//!
//! Programs are written top to bottom with [`Asm::jump`] and [`Asm::label`] instead of
//! counted offsets, so adding an instruction never silently retargets a jump. [`Asm::finish`]
//! checks that every label used is defined exactly once and that every distance fits the
//! 16-bit offset field.

use std::collections::HashMap;

use super::insn::{Cond, Insn, Reg};

/// A jump target, named.
pub type Label = &'static str;

/// What can go wrong assembling a program (always a bug in the program text).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump names a label that is never defined.
    #[error("jump to undefined label {0:?}")]
    UndefinedLabel(Label),
    /// A label is defined twice.
    #[error("label {0:?} is defined twice")]
    DuplicateLabel(Label),
    /// A jump is too far for the 16-bit offset.
    #[error("jump to {0:?} is out of range")]
    OutOfRange(Label),
}

/// Instructions under construction.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<Label, usize>,
    fixups: Vec<(usize, Label)>,
    duplicate: Option<Label>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Appends one instruction.
    pub fn push(&mut self, insn: Insn) -> &mut Asm {
        self.insns.push(insn);
        self
    }

    /// Appends several instructions (e.g. the two slots of [`Insn::ld_map_fd`]).
    pub fn extend(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Asm {
        self.insns.extend(insns);
        self
    }

    /// Defines `label` at the next instruction.
    pub fn label(&mut self, label: Label) -> &mut Asm {
        if self.labels.insert(label, self.insns.len()).is_some() {
            self.duplicate.get_or_insert(label);
        }
        self
    }

    /// `if dst <cond> imm goto label`.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), label));
        self.push(Insn::jmp_imm(cond, dst, imm, 0))
    }

    /// `if dst <cond> src goto label`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, label: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), label));
        self.push(Insn::jmp_reg(cond, dst, src, 0))
    }

    /// `goto label`.
    pub fn jump(&mut self, label: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), label));
        self.push(Insn::ja(0))
    }

    /// `r0 = value; exit`.
    pub fn ret(&mut self, value: i32) -> &mut Asm {
        self.push(Insn::mov64_imm(Reg::R0, value))
            .push(Insn::exit())
    }

    /// Resolves every label into a relative offset and returns the program.
    pub fn finish(self) -> Result<Vec<Insn>, AsmError> {
        if let Some(label) = self.duplicate {
            return Err(AsmError::DuplicateLabel(label));
        }
        let mut insns = self.insns;
        for (at, label) in self.fixups {
            let target = *self
                .labels
                .get(label)
                .ok_or(AsmError::UndefinedLabel(label))?;
            let distance = target as i64 - (at as i64 + 1);
            let off = i16::try_from(distance).map_err(|_| AsmError::OutOfRange(label))?;
            insns[at] = insns[at].with_off(off);
        }
        Ok(insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_jumps_resolve() {
        let mut asm = Asm::new();
        asm.label("top")
            .jump_imm(Cond::Eq, Reg::R1, 0, "out")
            .push(Insn::mov64_imm(Reg::R1, 0))
            .jump("top")
            .label("out")
            .ret(1);
        let insns = asm.finish().unwrap();
        assert_eq!(insns.len(), 5);
        assert_eq!(insns[0].off(), 2, "forward: skips two instructions");
        assert_eq!(
            insns[2].off(),
            -3,
            "backward: back to the first instruction"
        );
    }

    #[test]
    fn label_errors_are_reported() {
        let mut asm = Asm::new();
        asm.jump("nowhere").ret(0);
        assert_eq!(asm.finish(), Err(AsmError::UndefinedLabel("nowhere")));

        let mut asm = Asm::new();
        asm.label("a").ret(0).label("a");
        assert_eq!(asm.finish(), Err(AsmError::DuplicateLabel("a")));

        let mut asm = Asm::new();
        asm.jump("far");
        for _ in 0..40_000 {
            asm.push(Insn::mov64_imm(Reg::R0, 0));
        }
        asm.label("far").ret(0);
        assert_eq!(asm.finish(), Err(AsmError::OutOfRange("far")));
    }
}
