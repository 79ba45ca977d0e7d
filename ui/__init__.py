"""Streamlit helpers shared by the app's pages; the computing lives in `cifarlab`."""
