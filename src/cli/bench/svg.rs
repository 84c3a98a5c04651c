//! Line charts as SVG text, for `cairn bench chart`: a title, a legend, two axes (linear or log)
//! with ticks, labels and grid lines, and one line per series. Written by hand because this is all
//! the benchmarks need, and a plotting crate would bring fonts and image backends with it.

use std::fmt::Write as _;

use super::report::thousands;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
/// The plot area: room on the left for the y tick labels and the rotated y label, at the top for
/// the title and the legend, at the bottom for the x tick labels and the x label.
const PLOT_LEFT: f64 = 90.0;
const PLOT_RIGHT: f64 = WIDTH - 30.0;
const PLOT_TOP: f64 = 80.0;
const PLOT_BOTTOM: f64 = HEIGHT - 60.0;
/// Line colours, in series order; they are told apart in print and by most colour-blind readers.
const COLOURS: [&str; 4] = ["#1f6fb4", "#d9541e", "#2e9e44", "#7e4fb4"];
/// Rough width of one character at the legend's font size, to place the next entry.
const CHAR_WIDTH: f64 = 7.5;
/// Round-number ticks aim at about this many intervals on a linear axis.
const LINEAR_INTERVALS: f64 = 5.0;

/// A chart of lines through points.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Mark each point with a dot: for lines through a few measured points rather than a curve.
    pub dots: bool,
}

#[derive(Clone, Debug)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    /// Where the ticks go; round numbers when empty.
    pub ticks: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Starts at zero, or below it if a value is negative.
    Linear,
    /// For values spanning orders of magnitude; every value must be above zero.
    Log,
}

/// One line: its name in the legend, and its (x, y) points in the order they are joined.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl LineChart {
    /// The chart as an SVG document, or why it cannot be drawn.
    pub fn svg(&self) -> Result<String, String> {
        if self.series.is_empty() {
            return Err(format!("chart {:?} has no series to draw", self.title));
        }
        for series in &self.series {
            check_points(series, &self.x, &self.y)?;
        }
        let x = Span::new(&self.x, self.series.iter().flat_map(|series| series.points.iter().map(|point| point.0)));
        let y = Span::new(&self.y, self.series.iter().flat_map(|series| series.points.iter().map(|point| point.1)));
        let to_x = |value: f64| PLOT_LEFT + x.fraction(value) * (PLOT_RIGHT - PLOT_LEFT);
        let to_y = |value: f64| PLOT_BOTTOM - y.fraction(value) * (PLOT_BOTTOM - PLOT_TOP);

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="30" text-anchor="middle" font-size="17" font-weight="bold">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        self.legend(&mut svg);

        let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
        for &tick in &x.ticks {
            let _ = writeln!(svg, r#"<line x1="{0:.1}" y1="{PLOT_TOP}" x2="{0:.1}" y2="{PLOT_BOTTOM}"/>"#, to_x(tick));
        }
        for &tick in &y.ticks {
            let _ = writeln!(svg, r#"<line x1="{PLOT_LEFT}" y1="{0:.1}" x2="{PLOT_RIGHT}" y2="{0:.1}"/>"#, to_y(tick));
        }
        let _ = writeln!(svg, "</g>");

        let _ = writeln!(svg, r#"<g stroke="black" stroke-width="1">"#);
        let _ = writeln!(svg, r#"<line x1="{PLOT_LEFT}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}"/>"#);
        let _ = writeln!(svg, r#"<line x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{PLOT_BOTTOM}"/>"#);
        for &tick in &x.ticks {
            let _ = writeln!(
                svg,
                r#"<line x1="{0:.1}" y1="{PLOT_BOTTOM}" x2="{0:.1}" y2="{1}"/>"#,
                to_x(tick),
                PLOT_BOTTOM + 5.0
            );
        }
        for &tick in &y.ticks {
            let _ = writeln!(
                svg,
                r#"<line x1="{0}" y1="{1:.1}" x2="{PLOT_LEFT}" y2="{1:.1}"/>"#,
                PLOT_LEFT - 5.0,
                to_y(tick)
            );
        }
        let _ = writeln!(svg, "</g>");

        let _ = writeln!(svg, r#"<g text-anchor="middle">"#);
        for &tick in &x.ticks {
            let _ =
                writeln!(svg, r#"<text x="{:.1}" y="{}">{}</text>"#, to_x(tick), PLOT_BOTTOM + 19.0, tick_label(tick));
        }
        let _ = writeln!(svg, "</g>");
        let _ = writeln!(svg, r#"<g text-anchor="end">"#);
        for &tick in &y.ticks {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}">{}</text>"#,
                PLOT_LEFT - 8.0,
                to_y(tick) + 4.0,
                tick_label(tick)
            );
        }
        let _ = writeln!(svg, "</g>");
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            HEIGHT - 18.0,
            escape(&self.x.label)
        );
        let middle = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="22" y="{middle}" transform="rotate(-90 22 {middle})" text-anchor="middle" font-size="13">{}</text>"#,
            escape(&self.y.label)
        );

        for (index, series) in self.series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let points: Vec<String> =
                series.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", to_x(x), to_y(y))).collect();
            let _ = writeln!(svg, r#"<g class="series" fill="{colour}" stroke="{colour}">"#);
            let _ = writeln!(svg, "<title>{}</title>", escape(&series.name));
            let _ = writeln!(svg, r#"<polyline fill="none" stroke-width="2" points="{}"/>"#, points.join(" "));
            if self.dots {
                for &(x, y) in &series.points {
                    let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5"/>"#, to_x(x), to_y(y));
                }
            }
            let _ = writeln!(svg, "</g>");
        }
        let _ = writeln!(svg, "</svg>");
        Ok(svg)
    }

    /// One row between the title and the plot, so that it never covers a line.
    fn legend(&self, svg: &mut String) {
        let mut left = PLOT_LEFT;
        let _ = writeln!(svg, r#"<g class="legend">"#);
        for (index, series) in self.series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let _ = writeln!(
                svg,
                r#"<line x1="{left}" y1="52" x2="{}" y2="52" stroke="{colour}" stroke-width="3"/>"#,
                left + 24.0
            );
            let _ = writeln!(svg, r#"<text x="{}" y="56">{}</text>"#, left + 30.0, escape(&series.name));
            left += 30.0 + CHAR_WIDTH * series.name.chars().count() as f64 + 24.0;
        }
        let _ = writeln!(svg, "</g>");
    }
}

fn check_points(series: &Series, x: &Axis, y: &Axis) -> Result<(), String> {
    if series.points.is_empty() {
        return Err(format!("series {:?} has no points", series.name));
    }
    for &(px, py) in &series.points {
        for (value, axis) in [(px, x), (py, y)] {
            if !value.is_finite() {
                return Err(format!("series {:?} has a {} that is not a number: {value}", series.name, axis.label));
            }
            if axis.scale == Scale::Log && value <= 0.0 {
                return Err(format!(
                    "{} is drawn on a log scale, which has no place for {value} (series {:?})",
                    axis.label, series.name
                ));
            }
        }
    }
    Ok(())
}

/// What one axis spans and where its ticks are.
struct Span {
    scale: Scale,
    low: f64,
    high: f64,
    ticks: Vec<f64>,
}

impl Span {
    /// The values' range, widened to round ticks unless the axis names its own; a linear axis
    /// includes zero, so that heights compare.
    fn new(axis: &Axis, values: impl Iterator<Item = f64>) -> Span {
        let values: Vec<f64> = values.chain(axis.ticks.iter().copied()).collect();
        let mut low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let mut high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if axis.scale == Scale::Linear {
            low = low.min(0.0);
        }
        if low == high {
            (low, high) = match axis.scale {
                Scale::Linear => (low - 1.0, high + 1.0),
                Scale::Log => (low / 10.0, high * 10.0),
            };
        }
        if !axis.ticks.is_empty() {
            return Span { scale: axis.scale, low, high, ticks: axis.ticks.clone() };
        }
        match axis.scale {
            Scale::Linear => linear_ticks(low, high),
            Scale::Log => log_ticks(low, high),
        }
    }

    /// Where `value` falls between the ends of the axis, from 0 to 1.
    fn fraction(&self, value: f64) -> f64 {
        match self.scale {
            Scale::Linear => (value - self.low) / (self.high - self.low),
            Scale::Log => (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10()),
        }
    }
}

/// Ticks a round step apart (1, 2 or 5 times a power of ten), the ends moved out to ticks.
fn linear_ticks(low: f64, high: f64) -> Span {
    let rough = (high - low) / LINEAR_INTERVALS;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|factor| factor * magnitude).find(|&step| step >= rough);
    let step = step.unwrap_or(10.0 * magnitude);
    let first = (low / step).floor() as i64;
    let last = (high / step).ceil() as i64;
    let ticks: Vec<f64> = (first..=last).map(|index| index as f64 * step).collect();
    Span { scale: Scale::Linear, low: ticks[0], high: ticks[ticks.len() - 1], ticks }
}

/// Ticks at powers of ten, the ends moved out to them; with at most three decades, also at 2 and 5
/// times them, so that the axis has more than a few labels.
fn log_ticks(low: f64, high: f64) -> Span {
    let first = low.log10().floor() as i32;
    let last = high.log10().ceil() as i32;
    let factors: &[f64] = if last - first <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let mut ticks = Vec::new();
    for exponent in first..=last {
        let within = if exponent == last { &factors[..1] } else { factors };
        ticks.extend(within.iter().map(|factor| factor * 10f64.powi(exponent)));
    }
    Span { scale: Scale::Log, low: 10f64.powi(first), high: 10f64.powi(last), ticks }
}

/// `12000` as `12,000`, `0.30000000000000004` as `0.3`: the fewest decimals that show the value.
fn tick_label(value: f64) -> String {
    if value >= 1000.0 && value.fract() == 0.0 {
        return thousands(value as u64);
    }
    let decimals = (0..6)
        .find(|&decimals| {
            let scale = 10f64.powi(decimals);
            ((value * scale).round() / scale - value).abs() <= value.abs() * 1e-9
        })
        .unwrap_or(6);
    format!("{value:.0$}", decimals as usize)
}

/// Text as SVG carries it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Whether every element `svg` opens is closed, in order, and the document is one `<svg>`: the
/// check the tests make of each chart, short of an XML parser.
#[cfg(test)]
pub fn check_well_formed(svg: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg.trim();
    if !rest.starts_with("<svg ") || !rest.ends_with("</svg>") {
        return Err("not one <svg> element".to_string());
    }
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("a tag is not closed")? + start;
        let tag = &rest[start + 1..end];
        let name = tag.trim_start_matches('/').split_whitespace().next().unwrap_or("");
        if tag.starts_with('/') {
            let opened = open.pop().ok_or_else(|| format!("</{name}> closes nothing"))?;
            if opened != name {
                return Err(format!("<{opened}> is closed by </{name}>"));
            }
        } else if !tag.ends_with('/') {
            open.push(name);
        }
        rest = &rest[end + 1..];
        if open.is_empty() && !rest.is_empty() {
            return Err("text after </svg>".to_string());
        }
    }
    if open.is_empty() { Ok(()) } else { Err(format!("{open:?} are not closed")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(x_scale: Scale, points: Vec<(f64, f64)>) -> LineChart {
        LineChart {
            title: "put throughput".to_string(),
            x: Axis { label: "clients".to_string(), scale: x_scale, ticks: Vec::new() },
            y: Axis { label: "puts/s".to_string(), scale: Scale::Linear, ticks: Vec::new() },
            series: vec![
                Series { name: "etcd".to_string(), points: points.clone() },
                Series { name: "cairn".to_string(), points: points.iter().map(|&(x, y)| (x, y * 2.0)).collect() },
            ],
            dots: true,
        }
    }

    #[test]
    fn a_chart_is_one_well_formed_svg_with_title_legend_axis_labels_and_a_line_per_series() {
        let svg = chart(Scale::Log, vec![(1.0, 900.0), (16.0, 5000.0), (256.0, 9000.0)]).svg().unwrap();
        check_well_formed(&svg).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        for text in [">put throughput</text>", ">clients</text>", ">puts/s</text>", ">etcd</text>", ">cairn</text>"] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains(">20,000</text>"), "the y axis reaches past the highest point, 18,000: {svg}");
    }

    #[test]
    fn points_land_inside_the_plot_at_their_place_on_the_scale() {
        let mut chart = chart(Scale::Log, vec![(1.0, 0.0), (10.0, 50.0), (100.0, 100.0)]);
        chart.series.truncate(1);
        let svg = chart.svg().unwrap();
        let middle_x = (PLOT_LEFT + PLOT_RIGHT) / 2.0;
        let middle_y = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        let expected = format!(
            "points=\"{PLOT_LEFT:.1},{PLOT_BOTTOM:.1} {middle_x:.1},{middle_y:.1} {PLOT_RIGHT:.1},{PLOT_TOP:.1}\""
        );
        assert!(svg.contains(&expected), "{expected} not in {svg}");
    }

    #[test]
    fn log_axes_tick_at_powers_of_ten_and_at_two_and_five_when_short() {
        assert_eq!(log_ticks(0.3, 40.0).ticks, [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        let long = log_ticks(0.4, 2000.0);
        assert_eq!(long.ticks, [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0]);
        assert_eq!((long.low, long.high), (0.1, 10_000.0));
    }

    #[test]
    fn linear_axes_tick_at_round_steps_from_zero_past_the_highest_value() {
        let span = linear_ticks(0.0, 13_400.0);
        assert_eq!(span.ticks, [0.0, 5000.0, 10_000.0, 15_000.0]);
        let fractions = linear_ticks(0.0, 1.0);
        assert_eq!(fractions.ticks.len(), 6);
        assert_eq!(
            fractions.ticks.iter().map(|&tick| tick_label(tick)).collect::<Vec<_>>(),
            ["0", "0.2", "0.4", "0.6", "0.8", "1"]
        );
    }

    #[test]
    fn ticks_an_axis_names_are_kept_and_labelled() {
        let mut chart = chart(Scale::Log, vec![(1.0, 1.0), (4.0, 2.0), (256.0, 3.0)]);
        chart.x.ticks = vec![1.0, 4.0, 16.0, 64.0, 256.0];
        let svg = chart.svg().unwrap();
        for label in [">1</text>", ">4</text>", ">16</text>", ">64</text>", ">256</text>"] {
            assert!(svg.contains(label), "{label} missing from {svg}");
        }
        assert!(!svg.contains(">1,000</text>"), "no round ticks beside the named ones");
    }

    #[test]
    fn tick_labels_use_the_fewest_decimals_and_group_thousands() {
        assert_eq!(tick_label(0.1 + 0.2), "0.3");
        assert_eq!(tick_label(0.05), "0.05");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(tick_label(12_000.0), "12,000");
    }

    #[test]
    fn text_is_escaped() {
        let mut chart = chart(Scale::Linear, vec![(1.0, 1.0)]);
        chart.title = "a <b> & \"c\"".to_string();
        let svg = chart.svg().unwrap();
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"), "{svg}");
        check_well_formed(&svg).unwrap();
    }

    #[test]
    fn a_chart_that_cannot_be_drawn_says_why() {
        let mut empty = chart(Scale::Log, vec![(1.0, 1.0)]);
        empty.series.clear();
        assert!(empty.svg().unwrap_err().contains("no series"));
        assert!(chart(Scale::Log, vec![]).svg().unwrap_err().contains("\"etcd\" has no points"));
        let zero = chart(Scale::Log, vec![(0.0, 1.0)]).svg().unwrap_err();
        assert!(zero.contains("clients is drawn on a log scale, which has no place for 0"), "{zero}");
        let nan = chart(Scale::Linear, vec![(1.0, f64::NAN)]).svg().unwrap_err();
        assert!(nan.contains("puts/s that is not a number"), "{nan}");
    }

    #[test]
    fn a_single_point_still_has_an_axis_around_it() {
        let svg = chart(Scale::Log, vec![(64.0, 100.0)]).svg().unwrap();
        check_well_formed(&svg).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn the_well_formedness_check_finds_unclosed_and_crossed_tags() {
        assert!(check_well_formed("<svg a=\"b\"><g><line/></g></svg>").is_ok());
        assert!(check_well_formed("<svg a=\"b\"><g></svg>").is_err());
        assert!(check_well_formed("<svg a=\"b\"><g><text></g></text></svg>").is_err());
        assert!(check_well_formed("<g></g>").is_err());
    }
}
