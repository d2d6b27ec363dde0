//! How `ifpin demo` prints: a heading per section, one row per case as it finishes, then a
//! summary. Only formatting lives here; the cases and their verdicts come from
//! `ifpin_demo::cases`.

use ifpin::Level;
use ifpin_demo::cases::{CaseReport, LevelCase, Progress, Report, Section, Verdict};

/// `println!` that does not panic when stdout is gone (`ifpin demo | head`): the run goes on,
/// so the lab is still torn down properly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// What is marked where a measurement differs from `docs/kernel.md`.
const DIFFERS: &str = "[differs from the documented answer]";

/// Prints rows as the cases finish, with a heading whenever the section changes.
#[derive(Debug, Default)]
pub struct Table {
    section: Option<Section>,
    /// The levels of the vector being run, until its last level arrives.
    pending: Vec<LevelCase>,
}

impl Table {
    /// The introduction, before the lab is built.
    pub fn intro() {
        out!("ifpin demo: a throwaway virtual chassis in network namespaces.");
        out!(
            "  host: ctl0 = the internal control link (peer: backplane), eth1 = a front-panel port"
        );
        out!(
            "  (peer: front). The host's default route goes out eth1, and the control-plane address"
        );
        out!(
            "  exists behind both peers, so anything that leaks out of the front panel is answered."
        );
        out!("  Frames are counted at the far end of each link, live, for each case.");
    }

    /// Prints what a run reports as it goes.
    pub fn progress(&mut self, progress: Progress<'_>) {
        match progress {
            Progress::Case(case) => self.row(case),
            Progress::LevelsStart(command) => {
                self.section = None;
                out!();
                out!(
                    "levels: what each guarantee level holds. The override vectors that got out above, and"
                );
                out!("the escapes of a hostile root program, each run in the host as");
                out!("    {command}");
                out!(
                    "(cell: OUT or held, and the frames on the front link; the pinned cell of an override"
                );
                out!("vector is its kernel finding above)");
                out!(
                    "  {:<22} {:<9} {:<9} {:<9} at sealed: the kernel's answer [blocked]",
                    "vector",
                    "pinned",
                    "enforced",
                    "sealed"
                );
            }
            Progress::Level(case) => {
                self.pending.push(case.clone());
                if case.level == Level::Sealed {
                    level_row(&std::mem::take(&mut self.pending));
                }
            }
            Progress::LevelsSkipped(reason) => {
                out!("  (not run: {reason})");
            }
        }
    }

    /// Prints one finished case.
    fn row(&mut self, case: &CaseReport) {
        let section = case.spec.section;
        if self.section != Some(section) {
            self.section = Some(section);
            out!();
            out!("{}", section.heading());
            if is_finding(section) {
                out!(
                    "  {:<24} {:<13} {:>4} {:>5}  {:<8} kernel's answer",
                    "vector",
                    "run as",
                    "ctl0",
                    "front",
                    "verdict"
                );
            } else {
                out!(
                    "  {:<22} {:>4} {:>5}  {:<20} what happened",
                    "case",
                    "ctl0",
                    "front",
                    "verdict"
                );
            }
        }
        if is_finding(section) {
            let differs = if case.as_documented == Some(false) {
                format!("  {DIFFERS}")
            } else {
                String::new()
            };
            out!(
                "  {:<24} {:<13} {:>4} {:>5}  {:<8} {}{differs}",
                case.spec.id.trim_start_matches("finding-"),
                case.spec.privilege.to_string(),
                case.frames.ctl0,
                case.frames.front,
                case.verdict.to_string(),
                case.outcome,
            );
        } else {
            out!(
                "  {:<22} {:>4} {:>5}  {:<20} {}",
                case.spec.id,
                case.frames.ctl0,
                case.frames.front,
                verdict_text(case),
                case.outcome,
            );
        }
    }
}

fn is_finding(section: Section) -> bool {
    matches!(section, Section::KernelFinding | Section::Lifecycle)
}

/// One vector at every level it ran at: a cell per level, then sealed's answer.
fn level_row(cases: &[LevelCase]) {
    let Some(first) = cases.first() else { return };
    let cell = |level: Level| {
        cases.iter().find(|c| c.level == level).map_or_else(
            || "-".to_owned(),
            |c| {
                let verdict = if c.got_out { "OUT" } else { "held" };
                format!("{verdict:<4} {:>3}", c.frames.front)
            },
        )
    };
    let sealed = cases.iter().find(|c| c.level == Level::Sealed);
    let answer = sealed.map_or_else(String::new, |c| {
        let blocked: Vec<String> = c.blocked.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if blocked.is_empty() {
            c.answer.clone()
        } else {
            format!("{} [{}]", c.answer, blocked.join(", "))
        }
    });
    let differs: Vec<&str> = cases
        .iter()
        .filter(|c| !c.as_documented)
        .map(|c| c.level.as_str())
        .collect();
    let differs = if differs.is_empty() {
        String::new()
    } else {
        format!("  {DIFFERS} at {}", differs.join(", "))
    };
    out!(
        "  {:<22} {:<9} {:<9} {:<9} {answer}{differs}",
        first.vector,
        cell(Level::Pinned),
        cell(Level::Enforced),
        cell(Level::Sealed),
    );
}

fn verdict_text(case: &CaseReport) -> String {
    match (case.spec.section, case.verdict) {
        (Section::NegativeControl, Verdict::Leaked) => "LEAKS (as expected)".into(),
        (_, verdict) if case.ok => verdict.to_string(),
        (_, verdict) => format!("{verdict} <- problem"),
    }
}

/// The summary after every case ran.
pub fn summary(report: &Report) {
    let s = &report.summary;
    out!();
    out!(
        "summary (kernel {}; pinned by {})",
        report.kernel,
        report.pinning
    );
    out!(
        "  negative controls: {}/{} leaked out of the front panel, so the counters do see a leak.",
        s.controls_leaked,
        s.controls
    );
    if s.controls_leaked != s.controls {
        out!("    A control that did not leak means the counters cannot be trusted here.");
    }
    out!(
        "  library promises:  {}/{} held (pinned sockets: nothing on the front link; front ingress refused).",
        s.promises_kept,
        s.promises
    );
    for case in report
        .cases
        .iter()
        .filter(|c| c.spec.section.is_promise() && !c.ok)
    {
        out!(
            "    BROKEN: {}: {} ({})",
            case.spec.id,
            case.verdict,
            case.outcome
        );
    }
    let findings = s.vectors_leaking.len() + s.vectors_contained.len();
    out!(
        "  kernel findings:   {} of {findings} override vectors still leave through the front panel",
        s.vectors_leaking.len()
    );
    out!("    from a socket pinned to ctl0 on this kernel:");
    for line in wrap(&s.vectors_leaking.join(", "), 88) {
        out!("      {line}");
    }
    out!(
        "    Pinning (SO_BINDTOIFINDEX) holds honest code only; code that owns a socket can do the"
    );
    out!("    above. That is why the enforced level (`ifpin exec --level enforced`) filters by");
    out!("    interface in the kernel. These findings do not change the exit code.");
    if let Some(levels) = &report.levels {
        for level in Level::ALL {
            let at: Vec<&LevelCase> = levels.cases.iter().filter(|c| c.level == level).collect();
            let out: Vec<&str> = at.iter().filter(|c| c.got_out).map(|c| c.vector).collect();
            out!(
                "  {level} level:{:width$} {} of {} vectors held{}",
                "",
                at.len() - out.len(),
                at.len(),
                if out.is_empty() { "" } else { "; got out:" },
                width = 9 - level.as_str().len(),
            );
            for line in wrap(&out.join(", "), 88) {
                if !line.is_empty() {
                    out!("      {line}");
                }
            }
        }
    } else if let Some(reason) = &report.levels_skipped {
        out!("  levels: not shown ({reason})");
    }
    if !s.differs_from_documented.is_empty() {
        out!("  Different from the documented answer (docs/kernel.md) on this kernel:");
        for line in wrap(&s.differs_from_documented.join(", "), 88) {
            out!("      {line}");
        }
    }
    out!(
        "  result: {}",
        if s.ok {
            "OK: every promise held (exit 0)"
        } else {
            "PROBLEM: see above (exit 1)"
        }
    );
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}
