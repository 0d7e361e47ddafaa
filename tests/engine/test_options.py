import pytest

from multiview.engine.options import build_parser, parse_options, write_resolved_config


def _parser():
    parser = build_parser("test")
    parser.add_argument("--num_rays", type=int, default=512, help="rays per step")
    return parser


def test_precedence_cli_over_env_over_file_over_default(tmp_path, monkeypatch):
    config = tmp_path / "c.txt"
    config.write_text("num_rays = 100\nseed = 5\namp = false\nlr_decay_steps = [10, 20]\n")
    args = parse_options(_parser(), ["--config", str(config)])
    assert (args.num_rays, args.seed, args.amp, args.lr_decay_steps) == (100, 5, False, [10, 20])
    assert args.expname == "experiment"  # default
    monkeypatch.setenv("MVPRETRAIN_NUM_RAYS", "7")
    assert parse_options(_parser(), ["--config", str(config)]).num_rays == 7
    assert parse_options(_parser(), ["--config", str(config), "--num_rays", "9"]).num_rays == 9


def test_unknown_config_key_names_the_file_and_the_nearest_key(tmp_path):
    config = tmp_path / "bad.txt"
    config.write_text("num_ray = 100\n")
    with pytest.raises(ValueError, match=r"bad\.txt: unknown option 'num_ray'; did you mean 'num_rays'"):
        parse_options(_parser(), ["--config", str(config)])


def test_abbreviations_are_rejected():
    with pytest.raises(SystemExit):
        parse_options(_parser(), ["--num_ra", "3"])


def test_resolved_config_reloads_to_the_same_values(tmp_path):
    config = tmp_path / "c.txt"
    config.write_text("num_rays = 100\ntrain_datasets = [llff, spaces]\namp = false\n")
    parser = _parser()
    args = parse_options(parser, ["--config", str(config), "--seed", "3"])
    written = write_resolved_config(parser, args, tmp_path / "run")
    again = parse_options(_parser(), ["--config", str(written)])
    for key, value in vars(args).items():
        if key not in ("value_sources", "config"):
            assert getattr(again, key) == value, key
    assert "Command Line Args" in (tmp_path / "run" / "config_sources.txt").read_text()
