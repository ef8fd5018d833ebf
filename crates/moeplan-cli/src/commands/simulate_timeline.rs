//! `moeplan simulate --timeline`: the queue and the KV cache use over time, as SVG.
use moeplan::simulate::SimResult;
use plotters::prelude::*;

/// Queue length (left axis) and KV cache use in % (right axis) over time.
pub(super) fn svg(path: &std::path::Path, r: &SimResult) -> Result<(), String> {
    let pts = &r.timeline;
    if pts.is_empty() {
        return Err("no sample to draw".into());
    }
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let t_max = pts.iter().map(|p| p.t).fold(1e-9, f64::max);
    let q_max = pts.iter().map(|p| p.queue as f64).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("Queue and KV cache over time", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..q_max)
        .map_err(|e| e.to_string())?
        .set_secondary_coord(0.0..t_max, 0.0..100.0);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("requests waiting")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .configure_secondary_axes()
        .y_desc("KV cache in use (%)")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.t, p.queue as f64)),
            &BLUE,
        ))
        .map_err(|e| e.to_string())?
        .label("queue")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_secondary_series(LineSeries::new(
            pts.iter().map(|p| (p.t, p.kv_usage * 100.0)),
            &RED,
        ))
        .map_err(|e| e.to_string())?
        .label("KV cache %")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
