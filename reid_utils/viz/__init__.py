"""Figures, tables and the interactive explorer: the top layer, what notebooks call.

``from reid_utils import viz`` gives every plotting function (``viz.save_fig``,
``viz.plot_fig6``, ...); the modules below hold them by topic: ``style`` (saving,
house style), ``data`` (notebook 00), ``training`` (01, 04), ``ablations`` (02-03),
``aggregation`` (04-05), ``diagram`` (the method's block diagram, 04-05), ``importance``
and ``widgets`` (06), ``comparison`` (07), ``scoring`` (08).
"""

from reid_utils.viz.ablations import plot_clip_averaging, plot_sampling_ablation
from reid_utils.viz.aggregation import (
    AGG_METHOD_COLORS,
    plot_alpha_vs_cosine,
    plot_corruption_examples,
    plot_degradation,
    plot_fig6,
    plot_importance_heatmaps,
    plot_method_bars,
    plot_seed_table2,
)
from reid_utils.viz.comparison import plot_comparison
from reid_utils.viz.data import (
    NUISANCE_COLORS,
    contact_sheet,
    frame_nuisances,
    nuisance_contact_sheet,
    plot_calibration,
    plot_dataset_stats,
    plot_ranked_results,
    plot_sampling_methods,
    ranked_results_figure,
)
from reid_utils.viz.diagram import plot_method_diagram
from reid_utils.viz.importance import (
    CORRUPTED_COLOR,
    GALLERY_COLOR,
    QUERY_COLOR,
    ClipSource,
    clip_pair_image,
    figure_png,
    new_figure,
    plot_fig7,
    plot_importance_auc,
    plot_pair_importance,
)
from reid_utils.viz.scoring import plot_shortlist
from reid_utils.viz.style import save_fig, save_table, setup_style
from reid_utils.viz.training import plot_agg_training, plot_training_curves
from reid_utils.viz.widgets import ImportanceExplorer

__all__ = [
    "AGG_METHOD_COLORS",
    "CORRUPTED_COLOR",
    "GALLERY_COLOR",
    "NUISANCE_COLORS",
    "QUERY_COLOR",
    "ClipSource",
    "ImportanceExplorer",
    "clip_pair_image",
    "contact_sheet",
    "figure_png",
    "frame_nuisances",
    "new_figure",
    "nuisance_contact_sheet",
    "plot_agg_training",
    "plot_alpha_vs_cosine",
    "plot_calibration",
    "plot_clip_averaging",
    "plot_comparison",
    "plot_corruption_examples",
    "plot_dataset_stats",
    "plot_degradation",
    "plot_seed_table2",
    "plot_fig6",
    "plot_fig7",
    "plot_importance_auc",
    "plot_importance_heatmaps",
    "plot_method_bars",
    "plot_method_diagram",
    "plot_pair_importance",
    "plot_ranked_results",
    "plot_sampling_ablation",
    "plot_sampling_methods",
    "plot_shortlist",
    "plot_training_curves",
    "ranked_results_figure",
    "save_fig",
    "save_table",
    "setup_style",
]
