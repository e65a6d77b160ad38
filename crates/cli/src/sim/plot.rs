//! The simulation's plots, as SVG files (plotters; text is left to the
//! viewer's fonts, so nothing here needs a font on the machine).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line of a chart: its label and (seconds, value) points.
pub struct Line<'a> {
    /// What it shows.
    pub label: &'a str,
    /// Its points.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `lines` against seconds since the start, with dashed vertical
/// `marks` (e.g. a server killed) labelled in the legend.
pub fn chart(path: &Path, title: &str, y_label: &str, lines: &[Line<'_>], marks: &[(f64, &str)]) -> Result<()> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let x_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let y_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc(y_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    for (i, (x, label)) in marks.iter().enumerate() {
        let color = COLORS[(lines.len() + i) % COLORS.len()];
        chart
            .draw_series(DashedLineSeries::new(vec![(*x, 0.0), (*x, y_max)], 6, 4, color.stroke_width(1)))
            .map_err(|e| anyhow!("{e}"))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_line_and_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.svg");
        let lines = [
            Line { label: "appended/s", points: (0..50).map(|i| (i as f64, (i * 10) as f64)).collect() },
            Line { label: "received/s", points: (0..50).map(|i| (i as f64, (i * 8) as f64)).collect() },
        ];
        chart(&path, "events", "events/s", &lines, &[(20.0, "server killed")]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("appended/s") && svg.contains("server killed"), "{svg:.300}");
        assert!(svg.matches("<polyline").count() >= 2, "a polyline per line");
    }
}
