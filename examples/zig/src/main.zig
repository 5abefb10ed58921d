//! embed (Zig): turn images into vision-tower embeddings with vtower.
//!
//!   zig build run -- <model_dir> <image>...
const std = @import("std");
const vtower = @import("vtower");

pub fn main(init: std.process.Init) !u8 {
    const gpa = init.gpa;
    const io = init.io;
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    if (args.len < 3) {
        std.debug.print("usage: embed <model_dir> <image>...\n", .{});
        return 2;
    }

    var diag: vtower.Diagnostics = .{};
    const model = vtower.Model.load(args[1], 0, &diag) catch |e| {
        std.debug.print("embed: load: {s} ({t})\n", .{ diag.message(), e });
        return 1;
    };
    defer model.deinit();

    var buf: [4096]u8 = undefined;
    var stdout_writer: std.Io.File.Writer = .init(.stdout(), io, &buf);
    const out = &stdout_writer.interface;
    try out.print("{s}\nmodel: {s}, {d}-dim output\n", .{ vtower.version(), model.family(), model.outputDim() });

    for (args[2..]) |path| {
        const bytes = try std.Io.Dir.cwd().readFileAlloc(io, path, gpa, .limited(1 << 30));
        defer gpa.free(bytes);
        const e = model.embed(gpa, bytes, &diag) catch |err| {
            try out.flush();
            std.debug.print("embed: {s}: {s} ({t})\n", .{ path, diag.message(), err });
            return 1;
        };
        defer e.deinit(gpa);
        try out.print("{s}: {d} tokens x {d}, first values:", .{ path, e.tokens, e.dim });
        for (e.data[0..@min(4, e.data.len)]) |x| try out.print(" {d:.5}", .{x});
        try out.print("\n", .{});
    }
    try out.flush();
    return 0;
}
