//! How `ifpin demo` prints: a heading per section, one row per case as it finishes, then a
//! summary. Only formatting lives here; the cases and their verdicts come from `netlab::cases`.

use netlab::cases::{CaseReport, LevelCase, Progress, Report, Section, Verdict};

/// `println!` that does not panic when stdout is gone (`ifpin demo | head`): the run goes on,
/// so the lab is still torn down properly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints rows as the cases finish, with a heading whenever the section changes.
#[derive(Debug, Default)]
pub struct Table {
    section: Option<Section>,
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
            Progress::LevelsStart(confiner) => {
                self.section = None;
                out!();
                out!(
                    "what each guarantee level blocks: the vectors that leaked above, run again by a"
                );
                out!("child process confined to ctl0 ({confiner})");
                out!(
                    "  {:<24} {:<9} {:<13} {:>4} {:>5}  {:<8} kernel's answer (blocked by the programs)",
                    "vector",
                    "level",
                    "run as",
                    "ctl0",
                    "front",
                    "verdict"
                );
            }
            Progress::Level(case) => level_row(case),
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
                "  [differs from kernel-facts.md]"
            } else {
                ""
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

fn level_row(case: &LevelCase) {
    out!(
        "  {:<24} {:<9} {:<13} {:>4} {:>5}  {:<8} {} ({})",
        case.vector,
        case.level.to_string(),
        case.privilege.to_string(),
        case.frames.ctl0,
        case.frames.front,
        if case.leaked { "LEAKS" } else { "blocked" },
        case.answer,
        case.blocked_by_confinement,
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
        for guard in netlab::cases::Guard::ALL {
            let at: Vec<_> = levels.cases.iter().filter(|c| c.level == guard).collect();
            let leaking: Vec<_> = at.iter().filter(|c| c.leaked).map(|c| c.vector).collect();
            out!(
                "  {guard} level:{:width$} {} of {} of those vectors blocked (nothing on the front link){}",
                "",
                at.len() - leaking.len(),
                at.len(),
                if leaking.is_empty() {
                    String::new()
                } else {
                    format!("; still leaking: {}", leaking.join(", "))
                },
                width = 9 - guard.to_string().len(),
            );
        }
    } else if let Some(reason) = &report.levels_skipped {
        out!("  levels: not shown ({reason})");
    }
    if !s.differs_from_kernel_facts.is_empty() {
        out!(
            "    Different from kernel-facts.md on this kernel: {}",
            s.differs_from_kernel_facts.join(", ")
        );
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
