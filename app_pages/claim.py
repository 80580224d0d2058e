import streamlit as st
st.title('claim')
