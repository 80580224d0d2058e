import streamlit as st
st.title('gpus')
