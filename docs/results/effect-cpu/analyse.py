"""Per-cell numbers of the effect-cpu study behind docs/results/effect-cpu/README.md.

    STUDY_HOME=<where the study ran> python docs/results/effect-cpu/analyse.py > analyse.txt

Medians per (λ, critic precision) of the final modularity, MI and onset values; the paired
(by seed: same initialisation and data) Wilcoxon signed-rank tests of float32 against bfloat16;
and whether λ = 0.1 lowers each MI measurement, excess over its null, against the λ = 0 control.
"""

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs import load_study

d = load_study("effect-cpu")
s = d.seeds
print(s.columns.tolist()[:80])
c = d.curves
keys = ["mi.weight", "critic.precision"]
print(
    s.groupby(keys)[
        [
            "final.accuracy",
            "final.q_func",
            "final.q_struct",
            "final.q_func_z",
            "final.q_struct_z",
            "final.q_struct_delta_z",
            "final.nmi_func",
            "final.nmi_struct",
        ]
    ]
    .median()
    .round(3)
    .to_string()
)
print(s.groupby(keys)["first"].value_counts().unstack(fill_value=0))
print(s.groupby(keys)[["t_func", "t_struct"]].median())
for m in ["mi", "mi_gauss", "mi_gauss_null", "mi_heldout", "mi_heldout_null"]:
    col = f"final.{m}"
    if col in s:
        g = s.groupby(keys)[col]
        print(
            m,
            pd.concat([g.median(), g.quantile(0.25), g.quantile(0.75)], axis=1)
            .round(3)
            .to_string(),
        )
s["gauss_excess"] = s["final.mi_gauss"] - s["final.mi_gauss_null"]
s["heldout_excess"] = s["final.mi_heldout"] - s["final.mi_heldout_null"]
for col in ["gauss_excess", "heldout_excess"]:
    g = s.groupby(keys)[col]
    print(col, pd.concat([g.median(), g.min(), g.max()], axis=1).round(3).to_string())
# fp32 vs bf16 paired by seed at lambda 0.1
for lam in [0.0, 0.1]:
    a = s[(s["mi.weight"] == lam) & (s["critic.precision"] == "float32")].sort_values("seed_value")
    b = s[(s["mi.weight"] == lam) & (s["critic.precision"] == "bfloat16")].sort_values(
        "seed_value"
    )
    for col in [
        "final.accuracy",
        "final.q_func",
        "final.q_struct",
        "final.q_func_z",
        "final.q_struct_z",
        "t_func",
        "t_struct",
        "heldout_excess",
        "gauss_excess",
    ]:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        try:
            p = stats.wilcoxon(x[ok], y[ok]).pvalue if (x[ok] != y[ok]).any() else 1.0
        except Exception:
            p = float("nan")
        print(
            lam,
            col,
            "fp32 med",
            np.nanmedian(x).round(3),
            "bf16 med",
            np.nanmedian(y).round(3),
            "wilcoxon p",
            round(p, 3),
        )
    print(lam, "which-first fp32", a["first"].tolist(), "bf16", b["first"].tolist())
# MI lower than control? paired by seed lam .1 vs 0 within precision
for prec in ["float32", "bfloat16"]:
    a = s[(s["mi.weight"] == 0) & (s["critic.precision"] == prec)].sort_values("seed_value")
    b = s[(s["mi.weight"] == 0.1) & (s["critic.precision"] == prec)].sort_values("seed_value")
    for col in ["heldout_excess", "gauss_excess", "final.mi_heldout", "final.mi_gauss"]:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        print(
            prec,
            col,
            "lam0",
            np.median(x).round(3),
            "lam.1",
            np.median(y).round(3),
            "paired wilcoxon p",
            round(stats.wilcoxon(x, y).pvalue, 4),
            "n lower",
            int((y < x).sum()),
        )
