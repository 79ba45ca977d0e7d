"""Entry point: the navigation over ``pages/N_Title.py`` and the Home page.

Home explains what cifarlab is, what each page teaches, which data is in use and which trained
models are available. Pages are found by their file names, so a new ``pages/8_Title.py`` appears
in the navigation without a change here.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cifarlab import paths
from ui.common import DataError, describe_source, load_data, page_header, show_error

PAGES_DIR = Path(__file__).resolve().parent / "pages"

# (page file, icon, what the page teaches)
PAGES = [
    (
        "1_Data.py",
        ":material/photo_library:",
        "The 60,000 images and their ten classes; how validation images are carved out of the "
        "training set, and why the test set stays untouched until the end.",
    ),
    (
        "2_Augmentation.py",
        ":material/auto_fix_high:",
        "What flips, crops, rotations, cutout, mixup and friends do to a training image, with a "
        "slider for every parameter, and a recipe to train with.",
    ),
    (
        "3_Train.py",
        ":material/model_training:",
        "Train a network from the browser: pick an architecture and hyperparameters, then watch "
        "training and validation curves as it learns.",
    ),
    (
        "4_Models.py",
        ":material/account_tree:",
        "From a fully connected network to LeNet, VGG and ResNet: parameters, compute and "
        "accuracy side by side; choose the active model.",
    ),
    (
        "5_Reports.py",
        ":material/analytics:",
        "What a model gets right and wrong: per-class precision and recall, the confusion matrix, "
        "ROC curves, calibration and the misclassified images.",
    ),
    (
        "6_Classify.py",
        ":material/image_search:",
        "Upload your own picture and see the 32x32 image the network really sees, its top "
        "guesses and where it looks.",
    ),
    (
        "7_Attack.py",
        ":material/bolt:",
        "Change one pixel and fool the network: the one-pixel attack by differential evolution, "
        "and how often it succeeds.",
    ),
]


def page_title(filename: str) -> str:
    return Path(filename).stem.split("_", 1)[1].replace("_", " ")


def draw_pages() -> None:
    st.subheader("What each page teaches")
    for filename, icon, teaches in PAGES:
        title = page_title(filename)
        with st.container(border=True):
            if (PAGES_DIR / filename).is_file():
                st.page_link(f"pages/{filename}", label=f"**{title}**", icon=icon)
            else:
                # NOTE: a page that is not installed yet is listed without a link, because
                # st.page_link raises for a file that does not exist.
                st.markdown(f"{icon} **{title}** (not installed)")
            st.caption(teaches)


def draw_data() -> None:
    st.subheader("Data in use")
    try:
        data = load_data()
    except DataError as error:
        show_error(error)
        st.page_link("pages/1_Data.py", label="Choose another source on the Data page")
        return
    st.markdown(describe_source(data))
    columns = st.columns(3)
    columns[0].metric("Training images", f"{data.num_train:,}")
    columns[1].metric("Classes", len(data.classes))
    columns[2].metric("Test images", f"{data.num_test:,}")
    st.caption(
        "A validation set is carved out of the training images before any model is trained; "
        "the Data page shows how."
    )


def checkpoint_rows() -> list[dict]:
    """List available checkpoints, through cifarlab.checkpoints when it can be imported."""
    try:
        from cifarlab.checkpoints import list_checkpoints
    except ImportError:
        # Without the checkpoint module, list the files so the page still shows what is there.
        folders = [
            (paths.SHIPPED_CHECKPOINT_DIR, "shipped"),
            (paths.user_checkpoint_dir(), "yours"),
        ]
        return [
            {"name": file.stem, "origin": origin, "size (MB)": round(file.stat().st_size / 1e6, 1)}
            for folder, origin in folders
            if folder.is_dir()
            for file in sorted(folder.glob("*.pt"))
        ]
    rows = []
    for info in list_checkpoints():
        rows.append(
            # Accuracies come right after the name, so they stay in view in the narrow column.
            {
                "name": info.name,
                "validation accuracy": info.val_acc,
                "test accuracy": info.test_acc,
                "architecture": info.arch or "unreadable",
                "parameters": info.params,
                "size (MB)": round(info.size_bytes / 1e6, 1),
                "origin": "shipped" if info.protected else "yours",
            }
        )
    return rows


def draw_checkpoints() -> None:
    st.subheader("Trained models")
    rows = checkpoint_rows()
    if not rows:
        st.info(
            f"No checkpoints yet in {paths.SHIPPED_CHECKPOINT_DIR} or "
            f"{paths.user_checkpoint_dir()}. Train one on the Train page."
        )
        return
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "validation accuracy": st.column_config.NumberColumn(format="percent"),
            "test accuracy": st.column_config.NumberColumn(format="percent"),
            "parameters": st.column_config.NumberColumn(format="localized"),
        },
    )
    st.caption(
        "Models are selected on validation accuracy; test accuracy is measured once, for the "
        "record."
    )


def home() -> None:
    page_header(
        "cifarlab",
        "An interactive lab for learning image classification on **CIFAR-10**: 60,000 colour "
        "photos of 32x32 pixels in ten classes. Look at the data, augment it, train networks "
        "from a fully connected one to ResNet, read what they get wrong, and fool them with a "
        "single pixel. Everything here also runs from the command line: "
        "`python -m cifarlab --help`.",
    )

    left, right = st.columns([3, 2], gap="large")
    with left:
        draw_pages()
    with right:
        draw_data()
        draw_checkpoints()


def page_number(path: Path) -> int:
    return int(path.name.split("_", 1)[0])


def navigation_pages() -> list:
    icons = {filename: icon for filename, icon, _ in PAGES}
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    for path in sorted(PAGES_DIR.glob("[0-9]*_*.py"), key=page_number):
        pages.append(st.Page(f"pages/{path.name}", icon=icons.get(path.name)))
    return pages


st.set_page_config(page_title="cifarlab", page_icon=":material/science:", layout="wide")
st.navigation(navigation_pages()).run()
