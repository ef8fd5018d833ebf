//! `moeplan plan --pareto`: the Pareto front as an SVG plot.
use moeplan::search::{self, Candidate, PlanResult};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The plot: output tokens/s per user (x) against per GPU (y).
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Every candidate and the Pareto front as an SVG plot, the
/// recommendation circled.
pub(super) fn pareto_svg(path: &std::path::Path, r: &PlanResult) -> Result<(), String> {
    let pts: Vec<&Candidate> = r.candidates.iter().chain(r.pareto.iter()).collect();
    if pts.is_empty() {
        return Err("no candidate to plot".into());
    }
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(message)?;
    let mut chart = axes(&root, &pts)?;
    draw_front(&mut chart, r)?;
    draw_candidates(&mut chart, &pts)?;
    draw_recommended(&mut chart, r)?;
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(message)?;
    root.present().map_err(message)
}

/// A drawing error as the message the caller reports.
fn message(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A candidate's point: (output tokens/s per user, per GPU).
fn point(c: &Candidate) -> (f64, f64) {
    (
        c.figures.output_tokens_per_s_per_user.value(),
        c.figures.output_tokens_per_s_per_gpu.value(),
    )
}

/// The chart with its caption and labelled axes, each 10% past the
/// largest point (and at least 1.1).
fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    pts: &[&Candidate],
) -> Result<Chart<'a, 'b>, String> {
    let max_x = pts.iter().map(|c| point(c).0).fold(1.0, f64::max) * 1.1;
    let max_y = pts.iter().map(|c| point(c).1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Pareto front: throughput per GPU vs per user",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(message)?;
    chart
        .configure_mesh()
        .x_desc("output tokens/s per user")
        .y_desc("output tokens/s per GPU")
        .draw()
        .map_err(message)?;
    Ok(chart)
}

/// The Pareto front as a line, left to right.
fn draw_front(chart: &mut Chart, r: &PlanResult) -> Result<(), String> {
    let mut front: Vec<(f64, f64)> = r.pareto.iter().map(point).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, &BLACK))
        .map_err(message)?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    Ok(())
}

/// The candidates: aggregated as blue circles, disaggregated as red
/// triangles.
fn draw_candidates(chart: &mut Chart, pts: &[&Candidate]) -> Result<(), String> {
    let of_mode = |mode: search::Mode| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|c| c.figures.mode == mode)
            .map(|c| point(c))
            .collect()
    };
    let agg = of_mode(search::Mode::Aggregated);
    let dis = of_mode(search::Mode::Disaggregated);
    chart
        .draw_series(agg.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
        .map_err(message)?
        .label("aggregated")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .draw_series(dis.iter().map(|p| TriangleMarker::new(*p, 7, RED.filled())))
        .map_err(message)?
        .label("disaggregated")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, RED.filled()));
    Ok(())
}

/// The recommendation, circled in green.
fn draw_recommended(chart: &mut Chart, r: &PlanResult) -> Result<(), String> {
    if let Some(rec) = &r.recommended {
        chart
            .draw_series(std::iter::once(Circle::new(
                point(rec),
                11,
                GREEN.stroke_width(3),
            )))
            .map_err(message)?
            .label("recommended")
            .legend(|(x, y)| Circle::new((x + 10, y), 7, GREEN.stroke_width(3)));
    }
    Ok(())
}
