"""Data for the dashboard, one module per page (app_pages/): plain tables and figures.

No streamlit here: the pages cache and draw what these functions return, and the tests call them
directly. Uploads are size-checked, decoded as UTF-8 and parsed with yaml.safe_load or JSON
(through advisor.records); nothing is unpickled or executed.
"""
