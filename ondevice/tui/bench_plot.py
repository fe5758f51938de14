"""The bench screen's plots: labelled points of a figure against file size, on a plotext canvas."""

from __future__ import annotations

from textual_plotext import PlotextPlot


def plot_points(
    plot: PlotextPlot, points: list[tuple[str, float, float]], title: str, ylabel: str, empty: str
) -> None:
    """Draw (label, file size in MB, value) points, or `empty` in the middle when there are none."""
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    plt.xlabel("file size (MB)")
    plt.ylabel(ylabel)
    if not points:
        plt.xticks([])
        plt.yticks([])
        plt.text(empty, 0.5, 0.5, alignment="center")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        plot.refresh()
        return
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x_span = (max(xs) - min(xs)) or max(xs) * 0.2 or 1.0
    y_span = (max(ys) - min(ys)) or abs(max(ys)) * 0.2 or 1.0
    # Sizes, speeds and KL divergences are never negative: neither are the axes.
    plt.xlim(max(min(xs) - 0.15 * x_span, 0.0), max(xs) + 0.15 * x_span)
    plt.ylim(max(min(ys) - 0.15 * y_span, 0.0), max(ys) + 0.15 * y_span)
    middle = (min(xs) + max(xs)) / 2
    for label, x, y in points:  # the marker is part of its label, which runs towards the middle
        if x <= middle:
            plt.text(f"● {label}", x, y, alignment="left")
        else:
            plt.text(f"{label} ●", x, y, alignment="right")
    plot.refresh()
