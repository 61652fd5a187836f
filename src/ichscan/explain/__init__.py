"""Explanations: Grad-CAM / Grad-CAM++ heatmaps, input-gradient saliency, the pointing game, t-SNE."""

from ichscan.explain.cam import CAM_METHODS, class_activation_maps, find_target_layer
from ichscan.explain.overlay import save_explanation_figure
from ichscan.explain.pointing import label_masks, pointing_game, pointing_game_by_label
from ichscan.explain.saliency import input_gradient_saliency
from ichscan.explain.tsne import label_categories, plot_tsne, tsne_points

__all__ = [
    "CAM_METHODS",
    "class_activation_maps",
    "find_target_layer",
    "input_gradient_saliency",
    "label_categories",
    "label_masks",
    "plot_tsne",
    "pointing_game",
    "pointing_game_by_label",
    "save_explanation_figure",
    "tsne_points",
]
