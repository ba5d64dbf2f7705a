"""The claims of the paper, cell by cell, as readable matrices (from the report's CSV files).

    python docs/results/phase-cpu/claims.py docs/results/phase-cpu \
        > docs/results/phase-cpu/claims.txt

Reads claims_by_cell.csv and verdicts_by_cell.csv (or verdicts_by_mi_weight.csv), written by
`python -m analysis report`, and prints, per claim, one line per (cell, λ): n, the medians, the
paired effect, the BH-adjusted p and the verdict; then the timing verdict per cell. Nothing is
recomputed here.
"""

import sys
from pathlib import Path

import pandas as pd

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
claims = pd.read_csv(folder / "claims_by_cell.csv")
verdicts = pd.read_csv(next(iter(sorted(folder.glob("verdicts_by_*.csv")))))  # per cell, or per λ
cells = [
    c
    for c in claims.columns
    if c
    not in {
        "mi.weight",
        "claim",
        "n",
        "median_control",
        "median_treated",
        "effect",
        "n_in_direction",
        "p",
        "n_success",
        "p_bh",
        "verdict",
    }
]
pd.set_option("display.width", 200)
titles = {
    "accuracy": "Accuracy stays high (final task metric; n_success = treated seeds > threshold)",
    "functional": "Clear functional modularity (final q_func_z, treated vs λ = 0)",
    "structural": "Moderate structural modularity (final q_struct_z, treated vs λ = 0)",
    "mi": "The penalty lowers the measured MI (held-out excess over its null, nats)",
}
for claim, title in titles.items():
    t = claims[claims["claim"] == claim]
    if not len(t):
        continue
    cols = [
        *cells,
        "mi.weight",
        "n",
        "median_control",
        "median_treated",
        "effect",
        "p_bh",
        "verdict",
    ] + (["n_success"] if claim == "accuracy" else [])
    print(f"== {title}")
    print(t[cols].round(3).to_string(index=False))
    print("   verdicts:", t["verdict"].value_counts().to_dict(), "\n")
vcols = [
    *[c for c in cells if c in verdicts],
    "mi.weight",
    "n_seeds",
    "n_func_first",
    "n_struct_first",
    "n_tie",
    "n_neither",
    "p_sign_bh",
    "verdict",
    "t_func_km",
    "t_struct_km",
]
print("== Function before structure (timing verdict per cell; λ = 0 rows are controls)")
print(verdicts[[c for c in vcols if c in verdicts]].round(4).to_string(index=False))
