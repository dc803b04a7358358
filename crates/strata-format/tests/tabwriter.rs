use strata_format::*;

#[test]
fn docker_images_default_table() {
    let input = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n\
                 alpine\tlatest\t1d34ffeaf190\t2 weeks ago\t7.8MB\n\
                 registry.example.com/team/app\tv1.2.3\t0123456789ab\t3 months ago\t123MB\n";
    let want = "\
REPOSITORY                      TAG       IMAGE ID       CREATED        SIZE
alpine                          latest    1d34ffeaf190   2 weeks ago    7.8MB
registry.example.com/team/app   v1.2.3    0123456789ab   3 months ago   123MB
";
    assert_eq!(docker_table(input), want);
}

#[test]
fn docker_images_header_matches_docker_spacing() {
    // A 12-character CREATED cell ("3 months ago") gives the 8 spaces seen in Docker's docs.
    let out = docker_table("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\nalpine\tlatest\t1d34ffeaf190\t3 months ago\t7.8MB\n");
    assert_eq!(
        out.lines().next().unwrap(),
        "REPOSITORY   TAG       IMAGE ID       CREATED        SIZE"
    );
}

#[test]
fn minwidth_applies_to_short_columns() {
    assert_eq!(docker_table("A\tB\n1\t2\n"), "A         B\n1         2\n");
}

#[test]
fn trailing_cell_is_not_a_column_and_blocks_are_contiguous() {
    // Go's documented example: the b and c columns are separate blocks.
    let mut tw = TabWriter::new(0, 1, 1, '.', TabFlags::default());
    tw.write_str("aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n");
    assert_eq!(tw.finish(), "aaaa.bbb.d\naa...b...dd\na....\naa...cccc.eee\n");
}

#[test]
fn wide_characters_count_two_columns() {
    assert_eq!(docker_table("NAME\tX\n你好世界你好\t1\n"), "NAME           X\n你好世界你好   1\n");
}

#[test]
fn align_right_and_debug_flags() {
    let flags = TabFlags { align_right: true, ..Default::default() };
    let mut tw = TabWriter::new(0, 1, 1, ' ', flags);
    tw.write_str("a\tbbb\t\nccc\td\t\n");
    assert_eq!(tw.finish(), "   a bbb\n ccc   d\n");

    let flags = TabFlags { debug: true, ..Default::default() };
    let mut tw = TabWriter::new(0, 1, 1, ' ', flags);
    tw.write_str("a\tb\tc\nxx\tyy\tzz\n");
    assert_eq!(tw.finish(), "a  |b  |c\nxx |yy |zz\n");
}

#[test]
fn unterminated_last_line_and_empty_input() {
    assert_eq!(docker_table(""), "");
    assert_eq!(docker_table("A\tB\nx\ty"), "A         B\nx         y");
}

#[test]
fn tab_padding() {
    let mut tw = TabWriter::new(0, 8, 1, '\t', TabFlags::default());
    tw.write_str("a\tb\naaaaaaaaa\tc\n");
    assert_eq!(tw.finish(), "a\t\tb\naaaaaaaaa\tc\n");
}
