//! Builds the Zig example against an installed libvtower (Zig 0.17).
//!
//!   zig build run -- <model_dir> <image>...    run the example
//!   zig build test                             unit tests + the example on a fixture
//!
//! libvtower and vtower.h are found with pkg-config (`vtower.pc`, installed by
//! `make install`; set PKG_CONFIG_PATH for a non-system prefix). -Dmodel and -Dimages
//! point the tests at another fixture.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const model = b.option([]const u8, "model", "model folder for the tests") orelse
        fromRoot(b, "../../tests/fixtures/siglip_f32");
    const images = b.option([]const u8, "images", "folder of test images") orelse
        fromRoot(b, "../../tests/fixtures/images");
    const fixtures = b.option([]const u8, "fixtures", "the fixtures folder (video tests)") orelse
        fromRoot(b, "../../tests/fixtures");

    // vtower.h as a Zig module; linking it links libvtower (flags from pkg-config).
    const translate = b.addTranslateC(.{
        .root_source_file = b.path("src/c.h"),
        .target = target,
        .optimize = optimize,
    });
    translate.linkSystemLibrary("vtower", .{});
    const c_mod = translate.createModule();

    const vtower_mod = b.createModule(.{
        .root_source_file = b.path("src/vtower.zig"),
        .target = target,
        .optimize = optimize,
        .imports = &.{.{ .name = "c", .module = c_mod }},
    });

    const exe = b.addExecutable(.{
        .name = "embed",
        .root_module = b.createModule(.{
            .root_source_file = b.path("src/main.zig"),
            .target = target,
            .optimize = optimize,
            .imports = &.{.{ .name = "vtower", .module = vtower_mod }},
        }),
    });
    b.installArtifact(exe);

    const run = b.addRunArtifact(exe);
    run.addPassthruArgs();
    b.step("run", "Run the example: zig build run -- <model_dir> <image>...").dependOn(&run.step);

    // Unit tests of the wrapper, on the fixture model.
    const paths = b.addOptions();
    paths.addOption([]const u8, "model", model);
    paths.addOption([]const u8, "images", images);
    paths.addOption([]const u8, "fixtures", fixtures);
    const test_mod = b.createModule(.{
        .root_source_file = b.path("src/vtower.zig"),
        .target = target,
        .optimize = optimize,
        .imports = &.{.{ .name = "c", .module = c_mod }},
    });
    test_mod.addOptions("test_paths", paths);
    const unit = b.addRunArtifact(b.addTest(.{ .root_module = test_mod }));

    // The example itself on two bundled images.
    const example = b.addRunArtifact(exe);
    example.addArg(model);
    example.addArg(b.fmt("{s}/rgb.png", .{images}));
    example.addArg(b.fmt("{s}/photo.jpg", .{images}));
    example.expectStdOutMatch("rgb.png: 36 tokens x 64");
    example.expectStdOutMatch("photo.jpg: 36 tokens x 64");

    // And its error path: a corrupt image exits with status 1 and vtower's message.
    const failing = b.addRunArtifact(exe);
    failing.addArg(model);
    failing.addArg(b.fmt("{s}/garbage.bin", .{images}));
    failing.expectExitCode(1);
    failing.expectStdErrMatch("image could not be decoded");

    const test_step = b.step("test", "Run the unit tests and the example on a fixture");
    test_step.dependOn(&unit.step);
    test_step.dependOn(&example.step);
    test_step.dependOn(&failing.step);
}

/// A path relative to this build.zig's folder.
fn fromRoot(b: *std.Build, sub_path: []const u8) []const u8 {
    return b.root.joinString(b.allocator, sub_path) catch @panic("OOM");
}
