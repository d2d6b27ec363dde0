//! How `ifpin demo` prints: a heading per section, one row per case as it finishes, then a
//! summary. Only formatting lives here; the cases and their verdicts come from `netlab::cases`.

use netlab::cases::{CaseReport, Report, Section, Verdict};

/// Prints rows as the cases finish, with a heading whenever the section changes.
#[derive(Debug, Default)]
pub struct Table {
    section: Option<Section>,
}

impl Table {
    /// The introduction, before the lab is built.
    pub fn intro() {
        println!("ifpin demo: a throwaway virtual chassis in network namespaces.");
        println!(
            "  host: ctl0 = the internal control link (peer: backplane), eth1 = a front-panel port"
        );
        println!(
            "  (peer: front). The host's default route goes out eth1, and the control-plane address"
        );
        println!(
            "  exists behind both peers, so anything that leaks out of the front panel is answered."
        );
        println!("  Frames are counted at the far end of each link, live, for each case.");
    }

    /// Prints one finished case.
    pub fn row(&mut self, case: &CaseReport) {
        let section = case.spec.section;
        if self.section != Some(section) {
            self.section = Some(section);
            println!();
            println!("{}", section.heading());
            if section == Section::KernelFinding {
                println!(
                    "  {:<24} {:<13} {:>4} {:>5}  {:<8} kernel's answer",
                    "vector", "run as", "ctl0", "front", "verdict"
                );
            } else {
                println!(
                    "  {:<22} {:>4} {:>5}  {:<20} what happened",
                    "case", "ctl0", "front", "verdict"
                );
            }
        }
        if section == Section::KernelFinding {
            let differs = if case.as_documented == Some(false) {
                "  [differs from kernel-facts.md]"
            } else {
                ""
            };
            println!(
                "  {:<24} {:<13} {:>4} {:>5}  {:<8} {}{differs}",
                case.spec.id.trim_start_matches("finding-"),
                case.spec.privilege.to_string(),
                case.frames.ctl0,
                case.frames.front,
                case.verdict.to_string(),
                case.outcome,
            );
        } else {
            println!(
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
    println!();
    println!(
        "summary (kernel {}; pinned by {})",
        report.kernel, report.pinning
    );
    println!(
        "  negative controls: {}/{} leaked out of the front panel, so the counters do see a leak.",
        s.controls_leaked, s.controls
    );
    if s.controls_leaked != s.controls {
        println!("    A control that did not leak means the counters cannot be trusted here.");
    }
    println!(
        "  library promises:  {}/{} held (pinned sockets: nothing on the front link; front ingress refused).",
        s.promises_kept, s.promises
    );
    for case in report
        .cases
        .iter()
        .filter(|c| c.spec.section.is_promise() && !c.ok)
    {
        println!(
            "    BROKEN: {}: {} ({})",
            case.spec.id, case.verdict, case.outcome
        );
    }
    let findings = s.vectors_leaking.len() + s.vectors_contained.len();
    println!(
        "  kernel findings:   {} of {findings} override vectors still leave through the front panel",
        s.vectors_leaking.len()
    );
    println!("    from a socket pinned to ctl0 on this kernel:");
    for line in wrap(&s.vectors_leaking.join(", "), 88) {
        println!("      {line}");
    }
    println!(
        "    Pinning (SO_BINDTOIFINDEX) holds honest code only; code that owns a socket can do the"
    );
    println!(
        "    above. That is why the enforced level (`ifpin exec --level enforced`) filters by"
    );
    println!("    interface in the kernel. These findings do not change the exit code.");
    if !s.differs_from_kernel_facts.is_empty() {
        println!(
            "    Different from kernel-facts.md on this kernel: {}",
            s.differs_from_kernel_facts.join(", ")
        );
    }
    println!(
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
