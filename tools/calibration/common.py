import numpy as np, pandas as pd
from scipy.optimize import least_squares
import os
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../shared/calibration/h100_sxm/')
PEAK_BF16 = 989.4e12
PEAK_FP8 = 1978.9e12
HBM_BW = 3.35e12
NVLINK_BW = 450e9

def load(name):
    return pd.read_csv(D + name + '.csv')

def fit_log(pred_fn, p0, lo, hi, meas, loss='soft_l1', f_scale=0.1):
    """Fit params (in natural units) minimizing robust loss of log(pred/meas).
    Parameters are optimised in log-space (all positive)."""
    p0 = np.asarray(p0, float); lo = np.asarray(lo, float); hi = np.asarray(hi, float)
    lm = np.log(meas)
    def res(q):
        return np.log(pred_fn(np.exp(q))) - lm
    best = None
    # a few multi-starts to escape max() kinks
    rng = np.random.default_rng(0)
    starts = [np.log(p0)] + [np.log(p0) + rng.normal(0, 0.7, len(p0)) for _ in range(4)]
    for s in starts:
        s = np.clip(s, np.log(lo) + 1e-9, np.log(hi) - 1e-9)
        r = least_squares(res, s, bounds=(np.log(lo), np.log(hi)), loss=loss, f_scale=f_scale, max_nfev=3000)
        if best is None or r.cost < best.cost:
            best = r
    return np.exp(best.x)

def err_stats(pred, meas):
    e = np.abs(np.asarray(pred) - np.asarray(meas)) / np.asarray(meas)
    if len(e) == 0: return np.nan, np.nan, 0
    return np.median(e), np.percentile(e, 90), len(e)

def fmt_err(pred, meas):
    m, p, n = err_stats(pred, meas)
    return f"med {100*m:5.1f}%  p90 {100*p:6.1f}%  (n={n})"
