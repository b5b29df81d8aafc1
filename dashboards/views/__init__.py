"""One module per dashboard page; Streamlit runs each file as a script (`st.Page`)."""
