"""Front ends: the `mianjing` CLI and the Streamlit app."""
