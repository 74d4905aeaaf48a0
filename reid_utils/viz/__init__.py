"""Figures, tables and the interactive explorer: the top layer, what notebooks call.

``from reid_utils import viz`` gives every plotting function (``viz.save_fig``,
``viz.plot_fig6``, ...); the modules below hold them by topic.
"""

from reid_utils.viz.comparison import *  # noqa: F403
from reid_utils.viz.core import *  # noqa: F403
from reid_utils.viz.importance import *  # noqa: F403
from reid_utils.viz.scoring import *  # noqa: F403
from reid_utils.viz.widgets import ImportanceExplorer  # noqa: F401
