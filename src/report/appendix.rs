//! `appendix.tex`: a stand-alone document that inputs `numbers.tex`, every table and figure, with
//! captions that say what each number is. Compile it in the report directory with pdflatex.

use super::figures::Figure;
use super::latex::{escape, Header};
use super::numbers::command_part;
use super::rows::Study;
use super::tables::Table;

pub fn render(study: &Study, header: &Header, tables: &[Table], figures: &[Figure]) -> String {
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
    for table in tables {
        out.push_str(&format!(
            "\\begin{{table}}[ht]\n\\centering\n\\small\n\\caption{{{}{note}}}\n\\label{{tab:{}}}\n\\fitwidth{{\\input{{tables/{}}}}}\n\\end{{table}}\n\n",
            table.caption, table.stem, table.stem
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
    text.push_str(&lossless_sentence(study));
    text.push_str("\n\n");
    text
}

/// What the lossless check covered, counted from the runs (the report refuses any run that
/// failed it, so every counted generation matched).
fn lossless_sentence(study: &Study) -> String {
    let (speculative, ar): (Vec<_>, Vec<_>) =
        study.all_rows.iter().partition(|r| r.method.name() != "ar");
    let generations =
        |rows: &[&super::rows::RunRow]| rows.iter().map(|r| r.generations).sum::<u64>();
    let mut text = String::new();
    if !speculative.is_empty() {
        text.push_str(&format!(
            " Each of the {} generations of the {} speculative runs was compared token for token with AR's output on the same prompt, and every one matched.",
            generations(&speculative),
            speculative.len()
        ));
    }
    if !ar.is_empty() {
        text.push_str(&format!(
            " Every one of the {} measured generations of the {} AR runs reproduced an untimed AR generation of the same prompt.",
            generations(&ar),
            ar.len()
        ));
    }
    text
}
