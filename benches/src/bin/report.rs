//! Writes the generated part of BENCHMARKS.md and the SVG charts in
//! `docs/benchmarks/` from the results of the last `peers` and `load` bench runs:
//! `target/criterion/peers-check/*/*/new/estimates.json` (criterion's medians),
//! `target/bench-report/peers.json` and `target/bench-report/load.json`.
//!
//! Run it through `benches/report`, which runs the benches first. The generated part
//! sits between the `<!-- report:begin -->` and `<!-- report:end -->` lines of
//! BENCHMARKS.md; everything else in the file is left alone.
//!
//! A dev tool: it exits with a message (code 1) when a result file is missing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

const ENGINES: [&str; 3] = ["portcullis", "cedar", "casbin"];
const BEGIN: &str = "<!-- report:begin -->";
const END: &str = "<!-- report:end -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fail(message: String) -> ! {
    eprintln!("report: {message}");
    std::process::exit(1)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
        fail(format!(
            "cannot read `{}` ({error}); run `benches/report`, which runs the benches first",
            path.display()
        ))
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|error| fail(format!("`{}` is not JSON: {error}", path.display())))
}

/// Criterion's median for one engine at one rule count, in nanoseconds.
fn criterion_median(engine: &str, rules: u64) -> Option<f64> {
    let path = root().join(format!(
        "target/criterion/peers-check/{engine}/{rules}/new/estimates.json"
    ));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// A duration given in seconds, in the unit that suits it.
fn duration(seconds: f64) -> String {
    let ns = seconds * 1e9;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn thousands(value: f64) -> String {
    let n = value.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let kb: f64 = line
                .strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .ok()?;
            Some(format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    format!("{model}, {cores} cores (`nproc`), {memory} of memory")
}

fn load_note(loadavg: &str) -> String {
    let one: f64 = loadavg
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if one > cores {
        format!(
            "load average `{loadavg}` when the run ended: **the machine was shared** (more runnable work than cores), so these figures are inflated and noisier than on a quiet machine"
        )
    } else {
        format!("load average `{loadavg}` when the run ended")
    }
}

// ----- charts -----------------------------------------------------------------------------

type ChartResult = Result<(), Box<dyn std::error::Error>>;

fn check_chart(path: &Path, series: &[(&str, Vec<(f64, f64)>)]) -> ChartResult {
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .collect();
    let low = all.iter().copied().fold(f64::MAX, f64::min).max(1.0) / 2.0;
    let high = all.iter().copied().fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Check latency vs rule count (criterion median)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((70f64..14_000f64).log_scale(), (low..high).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("rules (log scale)")
        .y_desc("one check (log scale)")
        .x_label_formatter(&|x| thousands(*x))
        .y_label_formatter(&|y| duration(*y / 1e9))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for ((name, points), color) in series.iter().zip(colors) {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn bar_chart(path: &Path, title: &str, unit: &str, bars: &[(String, f64)]) -> ChartResult {
    let root = SVGBackend::new(path, (760, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let high = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.2;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0f64..high)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(unit)
        .y_label_formatter(&|y| thousands(*y))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), *value),
            ],
            RGBColor(31, 119, 180).filled(),
        );
        bar.set_margin(0, 0, 30, 30);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
        Text::new(
            format!("{}/s", thousands(*value)),
            (SegmentValue::CenterOf(i), *value),
            ("sans-serif", 15),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// `page` with the part between the markers replaced by `generated` (which carries
/// the markers), or with `generated` appended when the markers are missing.
fn splice(page: &str, generated: &str) -> String {
    match (page.find(BEGIN), page.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{generated}{}", &page[..begin], &page[end + END.len()..])
        }
        _ => format!("{}\n\n{generated}\n", page.trim_end()),
    }
}

// ----- the page ---------------------------------------------------------------------------

fn main() {
    let root = root();
    let peers = read_json(&root.join("target/bench-report/peers.json"));
    let load = read_json(&root.join("target/bench-report/load.json"));
    let charts = root.join("docs/benchmarks");
    std::fs::create_dir_all(&charts)
        .unwrap_or_else(|e| fail(format!("cannot create docs/benchmarks: {e}")));

    let sizes = peers["rule_counts"].as_array().cloned().unwrap_or_default();
    let mut md = String::new();
    let today = portcullis_engine::Time::now().to_string();
    let _ = writeln!(md, "{BEGIN}");
    let _ = writeln!(
        md,
        "*Generated by `benches/report` on {}.* Machine: {}. Peers run: {}. Load run: {}.\n",
        &today[..10.min(today.len())],
        machine(),
        load_note(peers["loadavg"].as_str().unwrap_or("?")),
        load_note(load["loadavg"].as_str().unwrap_or("?")),
    );

    // Check latency.
    let _ = writeln!(md, "### Check latency against Cedar and casbin\n");
    let _ = writeln!(
        md,
        "| rules | users / groups / assets | requests agreed (allowed) | Portcullis | Cedar | casbin | Cedar ÷ Portcullis | casbin ÷ Portcullis |\n|---|---|---|---|---|---|---|---|"
    );
    let mut series: Vec<(&str, Vec<(f64, f64)>)> =
        ENGINES.iter().map(|e| (*e, Vec::new())).collect();
    for size in &sizes {
        let rules = size["rules"].as_u64().unwrap_or(0);
        let medians: Vec<Option<f64>> =
            ENGINES.iter().map(|e| criterion_median(e, rules)).collect();
        for (serie, median) in series.iter_mut().zip(&medians) {
            if let Some(ns) = median {
                serie.1.push((rules as f64, *ns));
            }
        }
        let cell = |m: Option<f64>| m.map_or("not run".to_owned(), |ns| duration(ns / 1e9));
        let ratio = |m: Option<f64>| match (m, medians[0]) {
            (Some(peer), Some(ours)) => format!("{:.0}×", peer / ours),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} / {} / {} | {} ({}) | {} | {} | {} | {} | {} |",
            thousands(rules as f64),
            thousands(size["users"].as_f64().unwrap_or(0.0)),
            thousands(size["groups"].as_f64().unwrap_or(0.0)),
            thousands(size["assets"].as_f64().unwrap_or(0.0)),
            size["samples"],
            size["samples_allowed"],
            cell(medians[0]),
            cell(medians[1]),
            cell(medians[2]),
            ratio(medians[1]),
            ratio(medians[2]),
        );
    }
    let check_svg = charts.join("peers-check.svg");
    check_chart(&check_svg, &series)
        .unwrap_or_else(|e| fail(format!("cannot draw the check chart: {e}")));
    let _ = writeln!(
        md,
        "\n![check latency vs rule count](docs/benchmarks/peers-check.svg)\n"
    );

    // List.
    let _ = writeln!(md, "### List a user's assets\n");
    let _ = writeln!(
        md,
        "| rules | assets listed (mean) | checks per peer scan | Portcullis | Cedar (scan) | casbin (scan) |\n|---|---|---|---|---|---|"
    );
    for size in &sizes {
        let cell = |engine: &str| {
            let entry = &size["list"][engine];
            if entry["skipped"].as_bool() == Some(true) {
                format!(
                    "not run (≈ {} per list)",
                    duration(entry["estimated_s"].as_f64().unwrap_or(0.0))
                )
            } else {
                format!(
                    "{} ({} runs)",
                    duration(entry["median_s"].as_f64().unwrap_or(0.0)),
                    entry["runs"]
                )
            }
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} |",
            thousands(size["rules"].as_f64().unwrap_or(0.0)),
            size["mean_list_len"].as_f64().unwrap_or(0.0),
            thousands(size["checks_per_scan"].as_f64().unwrap_or(0.0)),
            cell("portcullis"),
            cell("cedar"),
            cell("casbin"),
        );
    }

    // HTTP and SCIM.
    let runs = load["runs"].as_array().cloned().unwrap_or_default();
    let run = |name: &str| {
        runs.iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let row = |label: &str, r: &Value| {
        format!(
            "| {label} | {} | {} | {:.2} s | **{}/s** | {:.0} µs | {:.0} µs | {:.0} µs |",
            r["connections"],
            thousands(r["requests"].as_f64().unwrap_or(0.0)),
            r["seconds"].as_f64().unwrap_or(0.0),
            thousands(r["rate"].as_f64().unwrap_or(0.0)),
            r["p50_us"].as_f64().unwrap_or(0.0),
            r["p99_us"].as_f64().unwrap_or(0.0),
            r["max_us"].as_f64().unwrap_or(0.0),
        )
    };
    let header = "| server | connections | requests | time | throughput | p50 | p99 | max |\n|---|---|---|---|---|---|---|---|";
    let (ours, bare) = (run("http-portcullis"), run("http-bare"));
    let ratio = load["http_ratio"].as_f64().unwrap_or(0.0);
    let p99_ms = ours["p99_us"].as_f64().unwrap_or(0.0) / 1000.0;
    let _ = writeln!(md, "\n### HTTP check throughput\n\n{header}");
    let _ = writeln!(
        md,
        "{}",
        row("`portcullis_http` `POST /api/v1/check`", &ours)
    );
    let _ = writeln!(md, "{}", row("bare axum + serde, same body", &bare));
    let _ = writeln!(
        md,
        "\nRatio Portcullis ÷ bare: **{ratio:.2}** (target ≥ 0.8: {}); Portcullis p99 {p99_ms:.2} ms (target ≤ 1 ms: {}).\n",
        if ratio >= 0.8 { "met" } else { "**missed**" },
        if p99_ms <= 1.0 { "met" } else { "**missed**" },
    );
    let in_flight = ours["connections"].as_f64().unwrap_or(0.0);
    let bare_rate = bare["rate"].as_f64().unwrap_or(0.0);
    if bare_rate > 0.0 {
        let _ = writeln!(
            md,
            "The client is closed-loop: every connection always has one request in flight, so by Little's law the mean latency is connections ÷ throughput. Even the bare handler's {}/s gives {:.2} ms at {in_flight:.0} connections; a p99 ≤ 1 ms at 64 connections needs more than 64,000 requests/s from both server and client on these cores.\n",
            thousands(bare_rate),
            in_flight / bare_rate * 1000.0,
        );
    }
    bar_chart(
        &charts.join("http.svg"),
        "HTTP check, 64 connections",
        "requests per second",
        &[
            (
                "Portcullis".to_owned(),
                ours["rate"].as_f64().unwrap_or(0.0),
            ),
            (
                "bare axum+serde".to_owned(),
                bare["rate"].as_f64().unwrap_or(0.0),
            ),
        ],
    )
    .unwrap_or_else(|e| fail(format!("cannot draw the HTTP chart: {e}")));
    let _ = writeln!(md, "![HTTP check throughput](docs/benchmarks/http.svg)\n");

    let (many, per_request, one) = (
        run("scim-create-32"),
        run("scim-create-32-per-request"),
        run("scim-create-1"),
    );
    let _ = writeln!(
        md,
        "### SCIM create-user throughput (file store, durable)\n\n{header}"
    );
    let _ = writeln!(
        md,
        "{}",
        row("SCIM `POST /Users`, 32 clients, group commit", &many)
    );
    let _ = writeln!(
        md,
        "{}",
        row(
            "SCIM `POST /Users`, 32 clients, a commit per request",
            &per_request
        )
    );
    let _ = writeln!(md, "{}", row("SCIM `POST /Users`, one client", &one));
    let rate = |run: &Value| run["rate"].as_f64().unwrap_or(0.0);
    let verdict = |rate: f64, target: f64| if rate >= target { "met" } else { "**missed**" };
    let _ = writeln!(
        md,
        "\nWith 32 clients: {}/s with group commit against the ≥ 10,000/s target ({}); {}/s with a commit per request against ≥ 2,000/s ({}).\n",
        thousands(rate(&many)),
        verdict(rate(&many), 10_000.0),
        thousands(rate(&per_request)),
        verdict(rate(&per_request), 2_000.0),
    );
    bar_chart(
        &charts.join("scim.svg"),
        "SCIM create-user, durable",
        "creates per second",
        &[
            ("32 clients, group commit".to_owned(), rate(&many)),
            (
                "32 clients, commit per request".to_owned(),
                rate(&per_request),
            ),
            ("1 client".to_owned(), rate(&one)),
        ],
    )
    .unwrap_or_else(|e| fail(format!("cannot draw the SCIM chart: {e}")));
    let _ = writeln!(md, "![SCIM create throughput](docs/benchmarks/scim.svg)");
    let _ = write!(md, "{END}");

    let page_path = root.join("BENCHMARKS.md");
    let page = std::fs::read_to_string(&page_path)
        .unwrap_or_else(|e| fail(format!("cannot read BENCHMARKS.md: {e}")));
    let page = splice(&page, &md);
    std::fs::write(&page_path, page)
        .unwrap_or_else(|e| fail(format!("cannot write BENCHMARKS.md: {e}")));
    eprintln!("report: wrote BENCHMARKS.md and {}", charts.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_unit_that_suits_them() {
        assert_eq!(duration(182e-9), "182 ns");
        assert_eq!(duration(1.894e-6), "1.89 µs");
        assert_eq!(duration(42.4e-6), "42 µs");
        assert_eq!(duration(3.114e-3), "3.11 ms");
        assert_eq!(duration(2.5), "2.50 s");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(10_000.0), "10,000");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
    }

    #[test]
    fn splice_replaces_only_the_generated_part() {
        let page = format!("head\n{BEGIN}\nold\n{END}\ntail\n");
        let new = format!("{BEGIN}\nnew\n{END}");
        assert_eq!(
            splice(&page, &new),
            format!("head\n{BEGIN}\nnew\n{END}\ntail\n")
        );
        assert_eq!(splice("head\n", &new), format!("head\n\n{new}\n"));
    }
}
