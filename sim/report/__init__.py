"""Renderers: text/JSON/CSV reports, schedule explanations, traces, plots and the HTML page."""
