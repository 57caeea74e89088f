//! Textbook claims and the verdict on each: HOLDS, DIFFERS (with the observed value and what made
//! it), or NOT OBSERVABLE HERE (with why). The claims are data: the seed article's ship as the
//! default (`claims/seed-article.toml`); `--claims FILE` replaces them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::report::{Report, RowId};
use crate::transfer::strategies::StrategyId;

pub use super::verdict::{ClaimFigure, ClaimsReport, Condition, Outcome, Verdict};

const DEFAULT_CLAIMS: &str = include_str!("../../claims/seed-article.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub strategy: String,
    pub figure: ClaimFigure,
    pub value: f64,
    #[serde(default)]
    pub when: Option<Condition>,
    #[serde(default)]
    pub quote: Option<String>,
}

impl Claim {
    /// What the claim counts, with its condition ("CPU copies (without SG)").
    pub fn figure_label(&self) -> String {
        match self.when {
            Some(Condition::Sg) => format!("{} (with SG)", self.figure.label()),
            Some(Condition::NoSg) => format!("{} (without SG)", self.figure.label()),
            None => self.figure.label().to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    format: u32,
    source: String,
    claim: Vec<Claim>,
}

#[derive(Debug, Clone)]
pub struct Claims {
    pub source: String,
    pub claims: Vec<Claim>,
}

/// The seed article's claims file, as shipped (`zc-trace claims`).
pub fn seed_text() -> &'static str {
    DEFAULT_CLAIMS
}

impl Claims {
    /// The seed article's claims.
    pub fn seed() -> Self {
        Self::parse(DEFAULT_CLAIMS).expect("the embedded claims file is valid")
    }

    pub fn load(path: &Path) -> Result<Self, InputError> {
        let err = |reason: String| InputError::Claims {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's message quotes the offending line under a caret: keep it to one line.
        let file: ClaimsFile = toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|r| {
                    let line = text[..r.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            let message: Vec<&str> = e.message().lines().map(str::trim).collect();
            format!("{}{span}", message.join(": "))
        })?;
        if file.format != 1 {
            return Err(format!(
                "format {} is not supported (this zc-trace reads format 1)",
                file.format
            ));
        }
        for (i, c) in file.claim.iter().enumerate() {
            if crate::transfer::strategies::by_name(&c.strategy).is_none() {
                return Err(format!(
                    "claim {}: unknown strategy '{}'",
                    i + 1,
                    c.strategy
                ));
            }
            if !c.value.is_finite() || c.value < 0.0 {
                return Err(format!("claim {}: value must be a number >= 0", i + 1));
            }
        }
        Ok(Claims {
            source: file.source,
            claims: file.claim,
        })
    }
}

/// What the run can say about the conditions claims depend on.
pub struct RunFacts {
    /// Whether the sink's route has scatter-gather (None: the sink has no network route).
    pub sink_has_sg: Option<bool>,
    pub sink: String,
    /// The source was evicted from the page cache before each run.
    pub cold: bool,
}

/// Judges every claim about a strategy the report ran (others are left out).
pub fn judge(claims: &Claims, report: &Report, facts: &RunFacts) -> ClaimsReport {
    let chunks = report
        .config
        .payload_bytes
        .div_ceil(report.config.chunk_bytes.max(1))
        .max(1) as f64;
    let verdicts = claims
        .claims
        .iter()
        .filter_map(|c| {
            let id = crate::transfer::strategies::by_name(&c.strategy)?.id();
            let s = report
                .strategies
                .iter()
                .find(|s| s.id == RowId::Strategy(id))?;
            Some(verdict(
                c,
                id,
                s,
                chunks,
                report.config.chunk_bytes as f64,
                report.config.payload_bytes as f64,
                facts,
            ))
        })
        .collect();
    ClaimsReport {
        source: claims.source.clone(),
        verdicts,
    }
}

fn verdict(
    c: &Claim,
    id: StrategyId,
    s: &crate::report::StrategyReport,
    chunks: f64,
    chunk_bytes: f64,
    payload: f64,
    facts: &RunFacts,
) -> Verdict {
    let mut v = Verdict {
        strategy: id,
        figure: c.figure,
        when: c.when,
        claimed: c.value,
        observed: None,
        verdict: Outcome::NotObservable,
        reason: String::new(),
        quote: c.quote.clone(),
    };
    let condition_met = match c.when {
        None => true,
        Some(Condition::Sg) => facts.sink_has_sg == Some(true),
        Some(Condition::NoSg) => facts.sink_has_sg == Some(false),
    };
    if !condition_met {
        let wanted = if c.when == Some(Condition::NoSg) {
            "without"
        } else {
            "with"
        };
        v.reason = match facts.sink_has_sg {
            None => format!(
                "the claim is about a network route {wanted} scatter-gather, and this run's sink \
                 ({}) has no route",
                facts.sink
            ),
            Some(sg) => format!(
                "the claim is about a route {wanted} scatter-gather, and this run's sink ({}) {} \
                 it; {}",
                facts.sink,
                if sg { "has" } else { "lacks" },
                if sg {
                    "run with --sink veth --no-sg for the case without"
                } else {
                    "run with --sink tcp for the case with"
                }
            ),
        };
        return v;
    }
    let observed =
        match c.figure {
            // A call that moved nothing (the read that sees end of file, a failed call) is no
            // transfer call: with one chunk it would otherwise read as a per-chunk cost.
            ClaimFigure::TransitionsPerCall => s
                .figures
                .transitions
                .value
                .as_ref()
                .map(|t| {
                    let idle: f64 = s
                        .syscalls_by_name
                        .values()
                        .map(|f| f.zero_returns.median + f.errors.median)
                        .sum();
                    (
                        (t.median - 2.0 * idle) / chunks,
                        transitions_story(s, chunks, chunk_bytes),
                    )
                })
                .ok_or_else(|| provenance_reason(&s.figures.transitions.provenance)),
            // A partial count is never graded: the ledger says the hooks missed bytes.
            ClaimFigure::CpuCopies => match &s.figures.cpu_copied_bytes.provenance {
                crate::report::Provenance::Incomplete { reason, .. } => {
                    Err(format!("the CPU-copied figure is incomplete: {reason}"))
                }
                p => s
                    .figures
                    .cpu_copied_bytes
                    .value
                    .as_ref()
                    .map(|b| (b.median / payload, copies_story(s)))
                    .ok_or_else(|| provenance_reason(p)),
            },
            ClaimFigure::DmaCopies => dma_copies(s, payload, facts),
            ClaimFigure::TotalCopies => dma_copies(s, payload, facts).and_then(|(dma, story)| {
                match &s.figures.cpu_copied_bytes.provenance {
                    crate::report::Provenance::Incomplete { reason, .. } => {
                        Err(format!("the CPU-copied figure is incomplete: {reason}"))
                    }
                    p => s
                        .figures
                        .cpu_copied_bytes
                        .value
                        .as_ref()
                        .map(|b| {
                            let cpu = b.median / payload;
                            (
                                cpu + dma,
                                format!(
                                    "CPU {cpu:.3} per byte ({}); DMA {dma:.3}: {story}",
                                    copies_story(s)
                                ),
                            )
                        })
                        .ok_or_else(|| provenance_reason(p)),
                }
            }),
        };
    match observed {
        Err(why) => v.reason = why,
        Ok((value, story)) => {
            v.observed = Some((value * 1000.0).round() / 1000.0);
            // One-off calls (mmap) spread over the chunks: compare rounded.
            v.verdict = if (value - c.value).abs() < 0.5 {
                Outcome::Holds
            } else {
                Outcome::Differs
            };
            v.reason = story;
        }
    }
    v
}

/// DMA copies of each payload byte: the disk's into the page cache (block I/O the sender
/// submitted, with --cold) and the NIC's out of memory (the payload of the sender's frames
/// handed to a device that reads by DMA). Where there is no such device, or the page cache
/// was warm, the claim's DMA does not happen here: not observable, with the reason.
fn dma_copies(
    s: &crate::report::StrategyReport,
    payload: f64,
    facts: &RunFacts,
) -> Result<(f64, String), String> {
    let f = &s.figures;
    let disk = f
        .device_read_bytes
        .value
        .as_ref()
        .map(|v| v.median / payload);
    let nic = match (
        f.nic_transmit_linear_bytes.value.as_ref(),
        f.nic_transmit_frag_bytes.value.as_ref(),
    ) {
        (Some(l), Some(g)) => Some((l.median, g.median)),
        _ => None,
    };
    if let Some(leg) = s
        .ledger
        .iter()
        .find(|l| l.leg == crate::kernel::probes::LegId::NicTransmit && l.unbalanced())
    {
        return Err(format!(
            "the device's transmit bytes do not balance with the bytes sent: {}",
            leg.note
        ));
    }
    let Some((linear, frags)) = nic else {
        return Err(match disk {
            Some(d) if d > 0.0 => format!(
                "disk -> memory observed: {d:.3} per byte (block:block_bio_queue, device reads \
                 the sender submitted); memory -> NIC cannot be: this run's sink ({}) has no \
                 NIC, so the transmit DMA the claim counts does not happen here (a NIC is used \
                 with --sink tcp:HOST:PORT)",
                facts.sink
            ),
            _ if facts.cold => format!(
                "no device read was observed even with --cold, and this run's sink ({}) has no \
                 NIC: the DMA the claim counts does not happen here",
                facts.sink
            ),
            _ => format!(
                "no DMA happens in this run: the page cache is warm (no disk read; try --cold), \
                 and this run's sink ({}) has no NIC (no transmit DMA; use --sink \
                 tcp:HOST:PORT through one)",
                facts.sink
            ),
        });
    };
    let nic_story = format!(
        "memory -> NIC {:.3} per byte at net:net_dev_start_xmit ({} in page fragments, {} in \
         linear parts)",
        (linear + frags) / payload,
        crate::ui::units::human_bytes(frags),
        crate::ui::units::human_bytes(linear)
    );
    if !facts.cold {
        return Err(format!(
            "{nic_story}; the claim also counts the disk's DMA into the page cache, which a \
             warm page cache skips: run with --cold"
        ));
    }
    match disk {
        Some(d) if d > 0.0 => Ok((
            d + (linear + frags) / payload,
            format!("disk -> page cache {d:.3} per byte (block:block_bio_queue); {nic_story}"),
        )),
        _ => Err(format!(
            "{nic_story}; no disk read was observed even with --cold (a file on tmpfs has no \
             disk), so the disk's DMA the claim counts did not happen"
        )),
    }
}

fn provenance_reason(p: &crate::report::Provenance) -> String {
    match p {
        crate::report::Provenance::NotObservable { reason } => reason.clone(),
        other => other.describe(),
    }
}

/// "per chunk: read x1 + write x1 (2 transitions each); once per transfer: read x1 returned
/// 0 (end of file)" from the syscalls, and why a call made more than one call per chunk.
fn transitions_story(s: &crate::report::StrategyReport, chunks: f64, chunk_bytes: f64) -> String {
    let mut per_chunk = Vec::new();
    let mut once = Vec::new();
    let mut idle = Vec::new();
    let mut short = Vec::new();
    for (name, f) in &s.syscalls_by_name {
        let zero = f.zero_returns.median;
        let failed = f.errors.median;
        let moving = f.count.median - zero - failed;
        let per = (moving / chunks).floor();
        if per >= 1.0 {
            per_chunk.push(if name == "splice" && per == 2.0 {
                "splice x2 (file -> pipe, then pipe -> socket)".to_string()
            } else {
                format!("{name} x{per}")
            });
            // More calls than chunks: each call moved less than a chunk. Only for calls whose
            // return value is the bytes they moved.
            let average = f.returned.as_ref().map(|r| r.median / moving.max(1.0));
            if let Some(average) =
                average.filter(|a| per >= 2.0 && name != "splice" && *a < chunk_bytes)
            {
                short.push(format!(
                    "{name} moved {} per call on average, less than the {} chunk: the sink \
                     took no more per call{}",
                    crate::ui::units::human_bytes(average),
                    crate::ui::units::human_bytes(chunk_bytes),
                    if s.sink == crate::transfer::sink::SinkKind::Pipe {
                        " (a pipe holds 64 KiB unless resized)"
                    } else {
                        ""
                    }
                ));
            }
        }
        let rest = moving - per * chunks;
        if rest > 0.0 {
            once.push(format!("{name} x{rest}"));
        }
        if zero > 0.0 {
            idle.push(format!(
                "{name} x{zero} returned 0{}",
                if name == "read" { " (end of file)" } else { "" }
            ));
        }
        if failed > 0.0 {
            idle.push(format!("{name} x{failed} failed"));
        }
    }
    let mut story = format!("per chunk: {} (2 transitions each)", per_chunk.join(" + "));
    if per_chunk.is_empty() {
        story = "no syscall per chunk".into();
    }
    if !short.is_empty() {
        story.push_str(&format!("; {}", short.join("; ")));
    }
    if !once.is_empty() {
        story.push_str(&format!("; once per transfer: {}", once.join(", ")));
    }
    if !idle.is_empty() {
        story.push_str(&format!(
            "; moved nothing, so not counted as transfer calls: {}",
            idle.join(", ")
        ));
    }
    if let Some(f) = s
        .figures
        .page_faults_user_mode
        .value
        .as_ref()
        .filter(|f| f.median > 0.0)
    {
        story.push_str(&format!("; user-mode page faults: {}", f.median));
    }
    story
}

/// "file_read k->u 1.0x, tcp_send u->k 1.0x" from the copy sites.
fn copies_story(s: &crate::report::StrategyReport) -> String {
    let payload = s
        .figures
        .payload_bytes
        .value
        .as_ref()
        .map_or(1.0, |p| p.median.max(1.0));
    let mut parts = Vec::new();
    for site in &s.copy_sites {
        let Some(b) = &site.bytes else { continue };
        for (label, v) in [
            ("user->kernel", &b.user_to_kernel),
            ("kernel->user", &b.kernel_to_user),
            ("kernel->kernel", &b.kernel_to_kernel),
        ] {
            if v.median > 0.0 {
                parts.push(format!("{} {label} x{:.3}", site.site, v.median / payload));
            }
        }
    }
    let by_reference: Vec<String> = s
        .copy_sites
        .iter()
        .filter_map(|site| {
            let r = site.bytes.as_ref()?.by_reference.median;
            (r > 0.0).then(|| format!("{} x{:.3}", site.site, r / payload))
        })
        .collect();
    let mut story = if parts.is_empty() {
        "no copy site copied payload bytes".to_string()
    } else {
        format!("copied at {}", parts.join(", "))
    };
    if !by_reference.is_empty() {
        story.push_str(&format!(
            "; passed by reference at {}",
            by_reference.join(", ")
        ));
    }
    story
}

impl std::fmt::Display for ClaimFigure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_claims_parse_and_cover_the_four_strategies() {
        let c = Claims::seed();
        for id in ["read-write", "mmap-write", "sendfile", "splice"] {
            assert!(c.claims.iter().any(|x| x.strategy == id), "{id}");
        }
        assert!(
            c.claims.iter().all(|x| x.quote.is_some()),
            "every seed claim is quoted"
        );
        assert!(c
            .claims
            .iter()
            .any(|x| x.strategy == "sendfile" && x.when == Some(Condition::NoSg)));
    }

    #[test]
    fn bad_claims_files_are_rejected_with_a_reason() {
        let e = Claims::parse("format = 1\nsource = \"x\"\n[[claim]]\nstrategy = \"teleport\"\nfigure = \"cpu_copies\"\nvalue = 1\n").unwrap_err();
        assert!(e.contains("unknown strategy 'teleport'"), "{e}");
        let e = Claims::parse("format = 2\nsource = \"x\"\nclaim = []\n").unwrap_err();
        assert!(e.contains("format 2"), "{e}");
        let e = Claims::parse("format = 1\nsource = \"x\"\n[[claim]]\nstrategy = \"splice\"\nfigure = \"speed\"\nvalue = 1\n").unwrap_err();
        assert!(e.contains("speed"), "{e}");
        let e = Claims::parse("format = 1\nsource = \"x\"\n[[claim]]\nstrategy = \"splice\"\nfigure = \"cpu_copies\"\nvalue = -1\n").unwrap_err();
        assert!(e.contains(">= 0"), "{e}");
    }
}
