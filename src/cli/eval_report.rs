//! `kpl eval --report DIR`: the evaluation as an HTML page with SVG plots.
//!
//! The plots are drawn with plotters' SVG backend alone: the text is written as
//! SVG `<text>` and the browser draws it, so no font file or system library is
//! needed. The page has no script and no inline style (the plots are files
//! beside it, the style sheet too), so it opens from disk and under a strict
//! Content-Security-Policy (`default-src 'self'`). Every number in it comes from
//! the same [`EvalOutput`] that `kpl eval --json` prints, also written beside it
//! as `eval.json`.

use std::fmt::{Display, Write as _};
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::eval::{EvalOutput, KSweep};
use super::kb::write_file;
use kpl::Error;

/// The methods in the report's order: the key in [`EvalOutput`], the name shown, the colour.
const METHODS: [(&str, &str, RGBColor); 5] = [
    ("zero_shot", "plain zero-shot", RGBColor(110, 110, 110)),
    ("text_proxy", "text proxy", RGBColor(31, 119, 180)),
    ("proxy", "proxy learning", RGBColor(44, 160, 44)),
    ("kpl", "KPL", RGBColor(214, 39, 40)),
    ("inmap", "InMaP", RGBColor(148, 103, 189)),
];

const FONT: &str = "sans-serif";

const CSS: &str = "body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 1.5rem auto; padding: 0 1rem; color: #1b1b1b; }
.warning { background: #fff4e5; border-left: 0.4rem solid #b35c00; padding: 0.6rem 0.9rem; }
.note { color: #444; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th[scope=row], thead th:first-child { text-align: left; }
tr.quote { background: #e8f1fb; font-weight: 600; }
figure { margin: 0.6rem 0; }
img { max-width: 100%; height: auto; }
.confusion { display: flex; flex-wrap: wrap; gap: 1rem; }
";

/// Writes `dir/index.html`, its plots (`accuracy.svg`, `recall.svg`,
/// `confusion-METHOD.svg`), `report.css` and `eval.json`, creating `dir`.
/// Each file is written beside and renamed, so a failed run leaves no half file.
///
/// Errors: the folder or a file cannot be written ([`Error::Io`] naming it).
pub(super) fn write(dir: &Path, output: &EvalOutput) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut files = vec![
        ("accuracy.svg".to_string(), accuracy_svg(output).map_err(plot_error("accuracy.svg"))?),
        ("recall.svg".to_string(), recall_svg(output).map_err(plot_error("recall.svg"))?),
    ];
    for (id, name, color) in METHODS {
        let file = format!("confusion-{id}.svg");
        let svg = confusion_svg(output, id, name, color).map_err(plot_error(&file))?;
        files.push((file, svg));
    }
    files.push(("report.css".into(), CSS.into()));
    files.push(("eval.json".into(), serde_json::to_string_pretty(output).expect("serialisable output")));
    files.push(("index.html".into(), html(output)));
    for (name, text) in files {
        write_file(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

fn plot_error<E: Display>(file: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Input(format!("drawing {file}: {e}"))
}

fn quote_sweep(output: &EvalOutput) -> Option<&KSweep> {
    output.results.iter().find(|s| s.k == output.quote_k)
}

/// A method's accuracy in one row of the sweep (plain zero-shot does not depend on k).
fn accuracy(output: &EvalOutput, sweep: &KSweep, id: &str) -> Option<f64> {
    if id == "zero_shot" {
        Some(output.zero_shot.accuracy)
    } else {
        sweep.methods.get(id).map(|s| s.accuracy)
    }
}

/// A method's recall of `class` at the quoted k.
fn recall(output: &EvalOutput, id: &str, class: &str) -> Option<f64> {
    let score = if id == "zero_shot" { Some(&output.zero_shot) } else { quote_sweep(output).and_then(|s| s.methods.get(id)) };
    score.and_then(|s| s.recall.get(class)).copied()
}

/// The best accuracy over the swept k of a method, and its k (the first one on ties).
fn best_over_k(output: &EvalOutput, id: &str) -> Option<(usize, f64)> {
    output
        .results
        .iter()
        .filter_map(|s| accuracy(output, s, id).map(|a| (s.k, a)))
        .fold(None, |best, (k, a)| match best {
            Some((_, b)) if b >= a => best,
            _ => Some((k, a)),
        })
}

/// A name cut to `max` characters, with an ellipsis, for plot labels.
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let cut: String = name.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The series' legend, boxed, at `position`.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn accuracy_svg(output: &EvalOutput) -> Result<String, Box<dyn std::error::Error>> {
    let ks: Vec<i32> = output.results.iter().map(|s| s.k as i32).collect();
    let lo = ks.iter().copied().min().unwrap_or(1) - 1;
    let hi = ks.iter().copied().max().unwrap_or(1) + 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Accuracy against k", (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(lo..hi, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("k (descriptions retrieved per class)")
            .y_desc("accuracy (%)")
            .label_style((FONT, 13))
            .draw()?;
        let quote = output.quote_k as i32;
        chart.draw_series(DashedLineSeries::new([(quote, 0.0), (quote, 100.0)], 5, 4, BLACK.stroke_width(1)))?;
        chart.draw_series([Text::new(
            format!("k = {quote}: the figure to quote"),
            (quote, 97.0),
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Top)),
        )])?;
        for (id, name, color) in METHODS {
            let points: Vec<(i32, f64)> =
                output.results.iter().filter_map(|s| accuracy(output, s, id).map(|a| (s.k as i32, a))).collect();
            if id == "zero_shot" {
                // Plain zero-shot has no k: one level across the plot.
                let level = output.zero_shot.accuracy;
                chart
                    .draw_series(DashedLineSeries::new([(lo, level), (hi, level)], 8, 5, color.stroke_width(2)))?
                    .label(format!("{name} (no k)"))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present()?;
    }
    Ok(svg)
}

fn recall_svg(output: &EvalOutput) -> Result<String, Box<dyn std::error::Error>> {
    let classes = &output.classes;
    let n = classes.len().max(1);
    let width = (n as u32 * 110 + 140).max(720);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Per-class recall at k = {}", output.quote_k), (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("recall (%)")
            .label_style((FONT, 13))
            .draw()?;
        let bar = 0.8 / METHODS.len() as f64;
        for (j, (id, name, color)) in METHODS.into_iter().enumerate() {
            let bars: Vec<Rectangle<(f64, f64)>> = classes
                .iter()
                .enumerate()
                .filter_map(|(c, class)| {
                    let left = c as f64 + 0.1 + j as f64 * bar;
                    recall(output, id, class).map(|r| Rectangle::new([(left, 0.0), (left + bar, r)], color.filled()))
                })
                .collect();
            chart
                .draw_series(bars)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        let label = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (c, class) in classes.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
            root.draw(&Text::new(shorten(class, 14), (x, y + 8), label.clone()))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(svg)
}

fn confusion_svg(output: &EvalOutput, id: &str, name: &str, color: RGBColor) -> Result<String, Box<dyn std::error::Error>> {
    let empty = Vec::new();
    let counts = output.confusion.get(id).unwrap_or(&empty);
    let n = counts.len() as i32;
    let cell = (320 / n.max(1)).clamp(34, 64);
    let (left, top) = (130, 56);
    let (width, height) = ((left + n * cell + 20) as u32, (top + n * cell + 40) as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = if id == "zero_shot" { name.to_string() } else { format!("{name}, k = {}", output.quote_k) };
        let centre = |size| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(title, (width as i32 / 2, 14), centre(16)))?;
        root.draw(&Text::new("rows: true class · columns: predicted", (width as i32 / 2, 36), centre(12)))?;
        let max_chars = (cell / 7).max(3) as usize;
        for (r, row) in counts.iter().enumerate() {
            let total: usize = row.iter().sum();
            let y = top + r as i32 * cell;
            let row_label = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(shorten(&output.classes[r], 18), (left - 6, y + cell / 2), row_label))?;
            for (c, &count) in row.iter().enumerate() {
                let x = left + c as i32 * cell;
                // Shaded by the share of the true class's images (the row's recall on the diagonal).
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let mix = |channel: u8| (255.0 - (255.0 - channel as f64) * share).round() as u8;
                let fill = RGBColor(mix(color.0), mix(color.1), mix(color.2));
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(200, 200, 200).stroke_width(1)))?;
                let ink = if share > 0.6 { WHITE } else { BLACK };
                root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), centre(13).color(&ink)))?;
            }
        }
        for (c, class) in output.classes.iter().enumerate().take(counts.len()) {
            let x = left + c as i32 * cell + cell / 2;
            root.draw(&Text::new(shorten(class, max_chars), (x, top + n * cell + 14), centre(12)))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A table cell showing `value` to `decimals` places; `data-value` keeps the
/// exact number (as in eval.json) for scripts that read the page.
fn number_cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("<td data-value=\"{}\">{v:.decimals$}</td>", serde_json::json!(v)),
        None => "<td>–</td>".to_string(),
    }
}

fn html(output: &EvalOutput) -> String {
    let task = escape(&output.task);
    let quote = output.quote_k;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n\
         <title>kpl eval: {task}</title>\n<link rel=\"stylesheet\" href=\"report.css\" />\n</head>\n<body>\n\
         <h1>Evaluation: {task}</h1>\n"
    );
    if let Some(warning) = output.warning {
        let _ = writeln!(
            h,
            "<p class=\"warning\" id=\"random-weights\"><strong>Random weights:</strong> {}. \
             These numbers test the software; they say nothing about any trained model.</p>",
            escape(warning)
        );
    }
    let _ = write!(
        h,
        "<p class=\"note\">A research evaluation on labelled images. Not a diagnosis.</p>\n\
         <p>{} images in {} classes.",
        output.images,
        output.classes.len()
    );
    if !output.unmatched_folders.is_empty() {
        let _ = write!(h, " Folders matching no class (left out): {}.", escape(&output.unmatched_folders.join(", ")));
    }
    if !output.classes_without_images.is_empty() {
        let _ = write!(h, " Classes without images: {}.", escape(&output.classes_without_images.join(", ")));
    }
    h.push_str("</p>\n");

    // Accuracy against k, the quoted row marked.
    let _ = write!(
        h,
        "<h2>Accuracy against k</h2>\n<figure><img src=\"accuracy.svg\" width=\"720\" height=\"420\" \
         alt=\"Accuracy (%) of each method against k; the table below has the same numbers.\" /></figure>\n\
         <p>The figure to quote is the row <strong>k = {quote}</strong>: its k was fixed before looking at the labels \
         (the reference's default when it is swept, else the first --k value).</p>\n\
         <table id=\"accuracy\">\n<caption>Accuracy (%)</caption>\n<thead><tr><th scope=\"col\">k</th>"
    );
    for (_, name, _) in METHODS {
        let _ = write!(h, "<th scope=\"col\">{}</th>", escape(name));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for sweep in &output.results {
        let quoted = sweep.k == quote;
        let _ = write!(
            h,
            "<tr{} data-k=\"{}\"><th scope=\"row\">{}{}</th>",
            if quoted { " class=\"quote\"" } else { "" },
            sweep.k,
            sweep.k,
            if quoted { " (the figure to quote)" } else { "" }
        );
        for (id, _, _) in METHODS {
            h.push_str(&number_cell(accuracy(output, sweep, id), 2));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");

    // Best over k: shown, but labelled as what it is.
    h.push_str(
        "<h3>Best over k, chosen on the test labels</h3>\n\
         <p>Picking k by the test accuracy uses the test labels: these figures are optimistic and not to be quoted \
         as a result.</p>\n<table id=\"best-over-k\">\n<caption>Best accuracy over k (%), chosen on the test labels</caption>\n\
         <thead><tr><th scope=\"col\">method</th><th scope=\"col\">accuracy</th><th scope=\"col\">at k</th></tr></thead>\n<tbody>\n",
    );
    for (id, name, _) in METHODS.iter().skip(1) {
        if let Some((k, a)) = best_over_k(output, id) {
            let _ = writeln!(h, "<tr><th scope=\"row\">{}</th>{}<td>{k}</td></tr>", escape(name), number_cell(Some(a), 2));
        }
    }
    h.push_str("</tbody>\n</table>\n");

    // Per-class recall at the quoted k.
    let _ = write!(
        h,
        "<h2>Per-class recall at k = {quote}</h2>\n<figure><img src=\"recall.svg\" \
         alt=\"Recall (%) of each class for each method at k = {quote}; the table below has the same numbers.\" /></figure>\n\
         <table id=\"recall\">\n<caption>Recall (%) at k = {quote}</caption>\n<thead><tr><th scope=\"col\">class</th><th scope=\"col\">images</th>"
    );
    for (_, name, _) in METHODS {
        let _ = write!(h, "<th scope=\"col\">{}</th>", escape(name));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for class in &output.classes {
        let images = output.per_class_images.get(class).copied().unwrap_or(0);
        let _ = write!(h, "<tr data-class=\"{}\"><th scope=\"row\">{}</th><td>{images}</td>", escape(class), escape(class));
        for (id, _, _) in METHODS {
            h.push_str(&number_cell(recall(output, id, class), 1));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");

    // Confusion matrices at the quoted k.
    let _ = write!(
        h,
        "<h2>Confusion matrices at k = {quote}</h2>\n<p>Rows: the true class; columns: the predicted class; \
         each cell counts images, shaded by its share of the row.</p>\n<div class=\"confusion\">\n"
    );
    for (id, name, _) in METHODS {
        let _ = writeln!(
            h,
            "<figure><img src=\"confusion-{id}.svg\" alt=\"Confusion matrix of {}; the counts are in eval.json under confusion.{id}.\" /></figure>",
            escape(name)
        );
    }
    h.push_str(
        "</div>\n<p class=\"note\">All numbers are also in <a href=\"eval.json\">eval.json</a> \
         (the output of <code>kpl eval --json</code>).</p>\n</body>\n</html>\n",
    );
    h
}
