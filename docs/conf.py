"""Sphinx configuration of the guest-health-monitor user guide.

Build: ``tox -e docs`` or ``make docs`` (warnings are errors in both).
"""

project = 'guest-health-monitor'
copyright = 'guest-health-monitor developers'
author = 'guest-health-monitor developers'

extensions = ['myst_parser']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'requirements.txt', 'schemas']

# Headings become link targets (#install, #reload-sighup, ...) as on a
# code forge, so a page can link to a section of another.
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']

html_theme = 'alabaster'
html_title = 'guest-health-monitor'
# The guide refers to files of the source tree (etc/, lab/, bench/) by
# their path; it is read beside them, not published alone.
html_show_sourcelink = False
