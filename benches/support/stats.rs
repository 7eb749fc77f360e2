//! Sample sets: median, percentiles, and a noise verdict.

#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

/// Robust coefficient of variation above which a figure is flagged noisy.
pub const NOISY_CV: f64 = 0.25;
/// p99/median above which a latency figure is flagged noisy.
pub const NOISY_TAIL: f64 = 10.0;

impl Samples {
    pub fn new() -> Self {
        Samples(Vec::new())
    }
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    pub fn extend(&mut self, v: impl IntoIterator<Item = f64>) {
        self.0.extend(v);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
    /// Nearest-rank percentile, p in 0..=100.
    pub fn pct(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    /// Robust coefficient of variation: 1.4826 × median absolute deviation
    /// over the median (what a plain cv would be for a normal distribution,
    /// but a latency tail cannot inflate it).
    pub fn robust_cv(&self) -> f64 {
        let m = self.median();
        if self.0.len() < 2 || m == 0.0 {
            return 0.0;
        }
        let dev = Samples(self.0.iter().map(|x| (x - m).abs()).collect()).median();
        1.4826 * dev / m
    }
    /// A short noise note: "cv 12%" plus a flag when noisy.
    pub fn noise(&self) -> (String, bool) {
        if self.0.len() < 2 {
            return ("n=1".into(), false);
        }
        let cv = self.robust_cv();
        let noisy = cv > NOISY_CV;
        (format!("cv {:.0}%", cv * 100.0), noisy)
    }
    /// For latency sets: p99/median tail ratio and whether it is noisy.
    pub fn tail(&self) -> (f64, bool) {
        let r = self.pct(99.0) / self.median();
        (r, r > NOISY_TAIL)
    }
}
