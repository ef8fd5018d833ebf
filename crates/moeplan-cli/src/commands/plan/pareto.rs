//! `moeplan plan --pareto`: the Pareto front as an SVG plot.
use moeplan::search::{self, Candidate, PlanResult};

pub(super) fn pareto_svg(path: &std::path::Path, r: &PlanResult) -> Result<(), String> {
    use plotters::prelude::*;
    let pts: Vec<&Candidate> = r.candidates.iter().chain(r.pareto.iter()).collect();
    if pts.is_empty() {
        return Err("no candidate to plot".into());
    }
    let max_x = pts
        .iter()
        .map(|c| c.figures.output_tokens_per_s_per_user.0)
        .fold(1.0, f64::max)
        * 1.1;
    let max_y = pts
        .iter()
        .map(|c| c.figures.output_tokens_per_s_per_gpu.0)
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Pareto front: throughput per GPU vs per user",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("output tokens/s per user")
        .y_desc("output tokens/s per GPU")
        .draw()
        .map_err(|e| e.to_string())?;
    let mut front: Vec<(f64, f64)> = r
        .pareto
        .iter()
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, &BLACK))
        .map_err(|e| e.to_string())?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    let agg: Vec<(f64, f64)> = pts
        .iter()
        .filter(|c| c.figures.mode == search::Mode::Aggregated)
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    let dis: Vec<(f64, f64)> = pts
        .iter()
        .filter(|c| c.figures.mode == search::Mode::Disaggregated)
        .map(|c| {
            (
                c.figures.output_tokens_per_s_per_user.0,
                c.figures.output_tokens_per_s_per_gpu.0,
            )
        })
        .collect();
    chart
        .draw_series(agg.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
        .map_err(|e| e.to_string())?
        .label("aggregated")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .draw_series(dis.iter().map(|p| TriangleMarker::new(*p, 7, RED.filled())))
        .map_err(|e| e.to_string())?
        .label("disaggregated")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, RED.filled()));
    if let Some(rec) = &r.recommended {
        let p = (
            rec.figures.output_tokens_per_s_per_user.0,
            rec.figures.output_tokens_per_s_per_gpu.0,
        );
        chart
            .draw_series(std::iter::once(Circle::new(p, 11, GREEN.stroke_width(3))))
            .map_err(|e| e.to_string())?
            .label("recommended")
            .legend(|(x, y)| Circle::new((x + 10, y), 7, GREEN.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
