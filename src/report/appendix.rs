//! `appendix.tex`: a stand-alone document that inputs `numbers.tex`, every table and figure, with
//! captions that say what each number is. Compile it in the report directory with pdflatex.

use super::figures::Figure;
use super::latex::{escape, Header};
use super::numbers::command_part;
use super::rows::Study;

/// (table file stem, caption).
const TABLES: [(&str, &str); 5] = [
    ("main", "Main results per dataset: throughput (generated tokens per second, mean over prompts and repeats), speedup over AR measured the same way, acceptance rate of drafted tokens and tokens committed per target forward pass. Best value per column in bold."),
    ("speedup", "Cross-dataset comparison: throughput (t/s) and speedup over AR."),
    ("latency", "Latency: time to first token (TTFT, prompt processing included) and time per output token (TPOT) after it, in milliseconds."),
    ("memory", "Peak memory: the heap high-water mark during generation with both models loaded, per dataset, its average and the change relative to AR. The proposed method in bold."),
    ("sweep", "The best speculative configuration per generation length and dataset, by speedup."),
];

pub fn render(study: &Study, header: &Header, figures: &[Figure]) -> String {
    let mut out = header.lines("% ");
    out.push_str(
        "\\documentclass[10pt]{article}\n\\usepackage[margin=2cm]{geometry}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n% Shrinks a table to the text width only when it is wider.\n\\newcommand{\\fitwidth}[1]{\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{#1}}\n\\input{numbers}\n\\begin{document}\n",
    );
    out.push_str(&format!(
        "\\section*{{Appendix: {}}}\n\n",
        escape(&study.experiment)
    ));
    out.push_str(&summary(study));
    let note = stand_in_note(study);
    for (stem, caption) in TABLES {
        out.push_str(&format!(
            "\\begin{{table}}[ht]\n\\centering\n\\small\n\\caption{{{caption}{note}}}\n\\label{{tab:{stem}}}\n\\fitwidth{{\\input{{tables/{stem}}}}}\n\\end{{table}}\n\n"
        ));
    }
    for figure in figures {
        out.push_str(&format!(
            "\\begin{{figure}}[ht]\n\\centering\n\\includegraphics[width={}]{{figures/{}.png}}\n\\caption{{{}{}}}\n\\label{{fig:{}}}\n\\end{{figure}}\n\n",
            if figure.wide { "\\linewidth" } else { "0.5\\linewidth" },
            figure.name,
            figure.caption,
            note,
            figure.name
        ));
    }
    out.push_str("\\end{document}\n");
    out
}

/// A caption's note naming every dataset that is a stand-in for the one its label names, so
/// that no table or figure passes it off as the real one.
fn stand_in_note(study: &Study) -> String {
    study
        .stand_ins
        .iter()
        .map(|(label, what)| {
            format!(
                " \\textbf{{{} is a stand-in:}} {}.",
                escape(label),
                escape(what.trim_end_matches('.'))
            )
        })
        .collect()
}

/// The opening paragraph, citing `numbers.tex` so that it never goes stale.
fn summary(study: &Study) -> String {
    let mut text = String::from(
        "All numbers below are generated from \\dtNumRuns{} runs (\\dtMaxNewTokens{} greedily generated tokens per prompt, on \\dtDevice).",
    );
    for (_, dataset) in &study.datasets {
        let has_best = study
            .rows
            .iter()
            .any(|r| &r.dataset == dataset && r.method.name() != "ar");
        if has_best {
            let part = command_part(dataset);
            text.push_str(&format!(
                " On {}, the fastest speculative configuration is \\dtBestMethod{part}{{}} at \\dtBestSpeedup{part}$\\times$ the throughput of AR.",
                escape(dataset)
            ));
        }
    }
    text.push_str(" Every speculative run produced exactly AR's tokens.\n\n");
    text
}
