"""Where rows come from: the generated default data, Global Opinion QA."""
