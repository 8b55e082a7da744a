"""The Streamlit page's parts, one module per tab or section; `streamlit_app.py` puts them together.

A thin shell over the `fer_realtime` library: everything here draws widgets and reads them; what the page does
with files, models, streams and datasets is the library's.
"""
