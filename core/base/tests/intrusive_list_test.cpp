#include <strata/base/intrusive_list.h>

#include <gtest/gtest.h>

#include <vector>

namespace strata {
namespace {

struct ByAge;
struct Item : ListHook<>, ListHook<ByAge> {
    int value = 0;
};

std::vector<int> values(IntrusiveList<Item>& list) {
    std::vector<int> out;
    for (auto& item : list) out.push_back(item.value);
    return out;
}

TEST(IntrusiveList, PushPopRemoveInOrder) {
    Item items[4];
    for (int i = 0; i < 4; ++i) items[i].value = i;
    IntrusiveList<Item> list;
    EXPECT_TRUE(list.empty());
    for (auto& item : items) list.push_back(item);
    EXPECT_EQ(list.size(), 4u);
    list.remove(items[1]);
    EXPECT_EQ(values(list), (std::vector<int>{0, 2, 3}));
    list.push_front(items[1]);
    EXPECT_EQ(values(list), (std::vector<int>{1, 0, 2, 3}));
    EXPECT_EQ(list.pop_front()->value, 1);
    EXPECT_FALSE(IntrusiveList<Item>::is_linked(items[1]));
    while (list.pop_front() != nullptr) {
    }
    EXPECT_TRUE(list.empty());
    EXPECT_EQ(list.pop_front(), nullptr);
}

TEST(IntrusiveList, ElementOnTwoListsAtOnce) {
    Item a, b;
    a.value = 1;
    b.value = 2;
    IntrusiveList<Item> fifo;
    IntrusiveList<Item, ByAge> by_age;
    fifo.push_back(a);
    fifo.push_back(b);
    by_age.push_back(b);
    by_age.push_back(a);
    EXPECT_EQ(fifo.front().value, 1);
    EXPECT_EQ(by_age.front().value, 2);
    fifo.remove(a);
    EXPECT_EQ(by_age.size(), 2u);
    by_age.remove(a);
    by_age.remove(b);
    fifo.remove(b);
}

TEST(IntrusiveList, SpliceKeepsOrder) {
    Item items[3];
    for (int i = 0; i < 3; ++i) items[i].value = i;
    IntrusiveList<Item> a, b;
    a.push_back(items[0]);
    b.push_back(items[1]);
    b.push_back(items[2]);
    a.splice_back(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(values(a), (std::vector<int>{0, 1, 2}));
    while (a.pop_front() != nullptr) {
    }
}

TEST(IntrusiveListDeathTest, DoubleInsertAborts) {
    Item a;
    IntrusiveList<Item> list;
    list.push_back(a);
    EXPECT_DEATH(list.push_back(a), "already on a list");
    list.remove(a);
}

}  // namespace
}  // namespace strata
