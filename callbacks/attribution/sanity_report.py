"""The sanity checks of one evaluation, for TensorBoard: a Markdown table (its TEXT tab) and a bar chart
(its IMAGES tab), one row and one bar per attribution method."""

from matplotlib.figure import Figure

FONT_POINTS = 10
COLUMNS = {
    "randomisation_correlation": "randomisation correlation",
    "infidelity": "infidelity",
    "sensitivity_max": "max sensitivity",
}


def sanity_table(results: dict[str, dict[str, float]], threshold: float) -> str:
    """Method x (randomisation correlation, flag, infidelity, max sensitivity), as Markdown."""
    lines = [
        "| method | randomisation correlation | insensitive to the model | infidelity | max sensitivity |",
        "|---|---:|:---:|---:|---:|",
    ]
    for method, values in results.items():
        flag = f"**yes** (> {threshold})" if values["insensitive"] else "no"
        lines.append(
            f"| {method} | {values['randomisation_correlation']:.3f} | {flag} | "
            f"{values['infidelity']:.3g} | {values['sensitivity_max']:.3g} |"
        )
    lines.append(
        "\nRandomisation correlation: Spearman rank correlation between the maps of the trained and the "
        "randomised model (Adebayo et al., 2018); near 1, the maps do not depend on what the model "
        "learned. Infidelity and max sensitivity: Captum's metrics, lower is better."
    )
    return "\n".join(lines)


def sanity_figure(results: dict[str, dict[str, float]], threshold: float) -> Figure:
    """One bar chart per check, the methods side by side; flagged methods red, the threshold dashed."""
    methods = list(results)
    figure = Figure(figsize=(4 + 1.2 * len(methods), 3.6), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(COLUMNS))
    for axis, (key, title) in zip(axes, COLUMNS.items(), strict=True):
        values = [results[method][key] for method in methods]
        colours = ["tab:red" if results[method]["insensitive"] else "tab:blue" for method in methods]
        axis.bar(range(len(methods)), values, color=colours)
        axis.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=FONT_POINTS)
        axis.set_title(title, fontsize=FONT_POINTS + 1)
        axis.tick_params(axis="y", labelsize=FONT_POINTS)
        if key == "randomisation_correlation":
            axis.axhline(threshold, color="black", linestyle="--", linewidth=1)
            axis.set_ylim(min(0.0, *values), 1.0)
    figure.suptitle(
        "attribution sanity checks (red: insensitive to the model's parameters)", fontsize=FONT_POINTS + 1
    )
    return figure
